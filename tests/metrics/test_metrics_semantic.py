"""Semantic segmentation: hand-computed confusion matrices and PNG folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from findvl.metrics.semantic import confusion_matrix, evaluate_semantic, metrics_from_confusion


def test_hand_computed_metrics():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 255, 2, 0]])
    matrix = confusion_matrix(gt, pred, num_classes=3, ignore=255)
    # gt 0: pred 0,1,0,255 ; gt 1: pred 1,1,2 ; the ignored pixel is dropped
    assert matrix.tolist() == [[2, 1, 0, 1], [0, 2, 1, 0], [0, 0, 0, 0]]
    result = metrics_from_confusion(matrix)
    iou0, iou1, iou2 = 2 / 4, 2 / 4, 0.0  # class 2 is only predicted: IoU 0, still averaged
    assert result.per_class_iou == pytest.approx([100 * iou0, 100 * iou1, 100 * iou2])
    assert result.mIoU == pytest.approx(100 * (iou0 + iou1 + iou2) / 3)
    assert result.pixel_accuracy == pytest.approx(100 * 4 / 7)
    assert result.mean_accuracy == pytest.approx(100 * (2 / 4 + 2 / 3) / 2)
    assert result.fwIoU == pytest.approx(100 * (4 / 7 * iou0 + 3 / 7 * iou1))


def test_absent_class_is_not_averaged():
    gt = np.array([[0, 1]])
    result = metrics_from_confusion(confusion_matrix(gt, gt, num_classes=5, ignore=255))
    assert result.mIoU == 100.0 and result.per_class_iou[2:] == [None, None, None]


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match=r"p\.png: class 7 outside \[0, 3\)"):
        confusion_matrix(
            np.zeros((2, 2)), np.full((2, 2), 7), num_classes=3, ignore=255, where="p.png"
        )


def test_folders(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for i in range(3):
        gt = rng.integers(0, 4, size=(16, 20)).astype(np.uint8)
        gt[0] = 255
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 4, gt.shape)).astype(
            np.uint8
        )
        pred[pred == 255] = 0
        Image.fromarray(gt).save(gt_dir / f"{i}.png")
        Image.fromarray(pred).save(pred_dir / f"{i}.png")
        gts.append(gt)
        preds.append(pred)
    result = evaluate_semantic(gt_dir, pred_dir, progress=False)
    expected = metrics_from_confusion(
        confusion_matrix(np.concatenate(gts), np.concatenate(preds), num_classes=4, ignore=255)
    )
    assert result.num_classes == 4 and result.num_images == 3
    assert result.mIoU == pytest.approx(expected.mIoU) and 40 < result.mIoU < 100
    (gt_dir / "3.png").write_bytes((gt_dir / "0.png").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"3\.png: no prediction"):
        evaluate_semantic(gt_dir, pred_dir, progress=False)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(pred_dir / "3.png")
    with pytest.raises(ValueError, match=r"3\.png: PNG mode 'RGB'"):
        evaluate_semantic(gt_dir, pred_dir, progress=False)
