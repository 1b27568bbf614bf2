"""COCO AP: equal to pycocotools' own loadRes path, sane on hand cases, empty predictions."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from findvl.metrics.instances import evaluate_instances
from findvl.metrics.io import rle_to_json


def make_gt(tmp_path: Path, rng: np.random.Generator, num_images: int = 4) -> tuple[Path, list]:
    """Random rectangles of three sizes per image; one image has no annotations."""
    images, annotations, masks = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 400, "height": 300, "file_name": f"{image_id}.jpg"})
        if image_id == num_images:
            continue  # an image without annotations
        for side in (20, 60, 120):  # small, medium, large
            y, x = rng.integers(0, 300 - side), rng.integers(0, 400 - side)
            mask = np.zeros((300, 400), bool)
            mask[y : y + side, x : x + side] = True
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 3)),
                    "segmentation": rle_to_json(mask),
                    "area": float(side * side),
                    "bbox": [float(x), float(y), float(side), float(side)],
                    "iscrowd": 0,
                }
            )
            masks.append(mask)
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path, annotations


def predictions_from(annotations: list, rng: np.random.Generator, jitter: int) -> list[dict]:
    preds = []
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        mask = np.zeros((300, 400), bool)
        mask[max(0, int(y) + dy) : int(y + h) + dy, max(0, int(x) + dx) : int(x + w) + dx] = True
        preds.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": rle_to_json(mask),
                "bbox": [x + dx, y + dy, w, h],
                "score": float(rng.random()),
            }
        )
    return preds


def test_perfect_predictions_score_100(tmp_path):
    rng = np.random.default_rng(0)
    gt_path, annotations = make_gt(tmp_path, rng)
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(predictions_from(annotations, rng, jitter=0)))
    result = evaluate_instances(gt_path, pred_path)
    for metrics in (result.segm, result.bbox):
        assert metrics is not None
        assert [
            metrics.AP,
            metrics.AP50,
            metrics.AP75,
            metrics.APs,
            metrics.APm,
            metrics.APl,
        ] == pytest.approx([100.0] * 6)


def test_equals_pycocotools_load_res(tmp_path):
    rng = np.random.default_rng(1)
    gt_path, annotations = make_gt(tmp_path, rng, num_images=6)
    preds = predictions_from(annotations, rng, jitter=8)
    preds += predictions_from(annotations[:5], rng, jitter=30)  # extra false positives
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(preds))
    result = evaluate_instances(gt_path, pred_path)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        for iou_type, ours in (("segm", result.segm), ("bbox", result.bbox)):
            evaluator = COCOeval(gt, gt.loadRes(str(pred_path)), iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            expected = [100 * v for v in evaluator.stats[:6]]
            got = [ours.AP, ours.AP50, ours.AP75, ours.APs, ours.APm, ours.APl]
            assert got == pytest.approx(expected)
    assert 0 < result.segm.AP < 100


def test_empty_predictions_give_zero_and_print_nothing(tmp_path, capsys):
    gt_path, _ = make_gt(tmp_path, np.random.default_rng(2))
    pred_path = tmp_path / "pred.json"
    pred_path.write_text("[]")
    result = evaluate_instances(gt_path, pred_path)
    assert result.bbox is None and result.num_predictions == 0
    assert [result.segm.AP, result.segm.AP50, result.segm.APs, result.segm.APl] == [0.0] * 4
    assert capsys.readouterr().out == ""


def test_area_range_without_ground_truth_is_undefined(tmp_path):
    rng = np.random.default_rng(3)
    gt_path, annotations = make_gt(tmp_path, rng)
    data = json.loads(gt_path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["area"] > 32**2]  # no small ones
    gt_path.write_text(json.dumps(data))
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(predictions_from(data["annotations"], rng, jitter=0)))
    result = evaluate_instances(gt_path, pred_path)
    assert result.segm.APs is None and pytest.approx(100.0) == result.segm.AP


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"image_id": 1, "category_id": 1, "score": 0.5},
            r"pred\.json: \[1\]: missing field 'segmentation'",
        ),
        (
            {"image_id": 99, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]},
            r"\[1\]: field 'image_id': 99",
        ),
        (
            {"image_id": 1, "category_id": 7, "score": 0.5, "bbox": [0, 0, 1, 1]},
            r"field 'category_id': 7",
        ),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, r"\[1\]: missing field 'score'"),
        (
            {"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"size": [3]}},
            r"field 'size'",
        ),
    ],
)
def test_malformed_predictions_name_file_and_field(tmp_path, record, message):
    rng = np.random.default_rng(4)
    gt_path, annotations = make_gt(tmp_path, rng)
    good = {"image_id": 1, "category_id": 1, "score": 0.1, "bbox": [0, 0, 4, 4]}
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps([good, record]))
    with pytest.raises(ValueError, match=message):
        evaluate_instances(gt_path, pred_path)


def test_missing_and_invalid_files(tmp_path):
    gt_path, _ = make_gt(tmp_path, np.random.default_rng(5))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        evaluate_instances(gt_path, tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        evaluate_instances(gt_path, bad)
