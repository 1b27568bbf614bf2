"""PQ: hand-computed cases and agreement with torchmetrics' PanopticQuality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findvl.metrics.panoptic import evaluate_panoptic
from findvl.panoptic_ids import id2rgb

CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 3, "name": "sky", "isthing": 0},
]


def write_panoptic(folder: Path, name: str, images: list[tuple[np.ndarray, list[dict]]]) -> Path:
    """Write ``images`` (id map, segments_info) as ``folder/name.json`` + ``folder/name/*.png``."""
    png_dir = folder / name
    png_dir.mkdir(parents=True, exist_ok=True)
    annotations = []
    for image_id, (ids, segments) in enumerate(images):
        file_name = f"{image_id:04d}.png"
        Image.fromarray(id2rgb(ids)).save(png_dir / file_name)
        annotations.append(
            {"image_id": image_id, "file_name": file_name, "segments_info": segments}
        )
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"annotations": annotations, "categories": CATEGORIES}))
    return path


def run(tmp_path: Path, gt: list, pred: list):
    gt_json = write_panoptic(tmp_path, "gt", gt)
    pred_json = write_panoptic(tmp_path, "pred", pred)
    return evaluate_panoptic(gt_json, tmp_path / "gt", pred_json, tmp_path / "pred", progress=False)


def seg(seg_id: int, category: int, crowd: int = 0) -> dict:
    return {"id": seg_id, "category_id": category, "iscrowd": crowd}


def test_perfect_prediction_scores_100(tmp_path):
    ids = np.zeros((8, 8), np.int64)
    ids[:4] = 7
    ids[4:, :4] = 9
    segments = [seg(7, 3), seg(9, 1)]
    result = run(tmp_path, [(ids, segments)], [(ids, segments)])
    assert (result.All.PQ, result.All.SQ, result.All.RQ, result.All.n) == (100.0, 100.0, 100.0, 2)
    assert result.Things.n == 1 and result.Stuff.n == 1


def test_empty_prediction_gives_zero_and_missing_image_counts_as_empty(tmp_path):
    ids = np.ones((6, 6), np.int64)
    result = run(
        tmp_path, [(ids, [seg(1, 1)]), (ids * 2, [seg(2, 2)])], [(np.zeros((6, 6), np.int64), [])]
    )
    assert result.All.PQ == 0.0 and result.All.n == 2
    assert sorted((r.category_id, r.FN, r.FP) for r in result.per_class) == [(1, 1, 0), (2, 1, 0)]


def test_hand_computed_partial_match_and_false_positive(tmp_path):
    gt = np.zeros((10, 10), np.int64)
    gt[:, :5] = 1  # person, 50 px
    gt[:, 5:] = 2  # sky, 50 px
    pred = np.zeros((10, 10), np.int64)
    pred[:, :4] = 5  # person, 40 px inside gt person -> IoU 0.8
    pred[:, 4:] = 6  # car, 60 px -> false positive; sky unmatched -> false negative
    result = run(tmp_path, [(gt, [seg(1, 1), seg(2, 3)])], [(pred, [seg(5, 1), seg(6, 2)])])
    rows = {r.category_id: r for r in result.per_class}
    assert rows[1].TP == 1 and pytest.approx(80.0) == rows[1].PQ
    assert (rows[2].FP, rows[2].PQ) == (1, 0.0) and (rows[3].FN, rows[3].PQ) == (1, 0.0)
    assert pytest.approx(80.0 / 3) == result.All.PQ
    assert pytest.approx(40.0) == result.Things.PQ and result.Stuff.PQ == 0.0


def test_void_is_left_out_of_the_union_and_void_predictions_are_not_false_positives(tmp_path):
    gt = np.zeros((10, 10), np.int64)
    gt[:, :4] = 1  # person, 40 px; columns 4.. are VOID
    pred = np.zeros((10, 10), np.int64)
    pred[:, :6] = 3  # person, 60 px: 40 on gt, 20 on VOID -> IoU 40 / (60 + 40 - 40 - 20) = 1
    pred[:, 7:] = 4  # car entirely on VOID -> ignored
    result = run(tmp_path, [(gt, [seg(1, 1)])], [(pred, [seg(3, 1), seg(4, 2)])])
    assert [(r.category_id, r.TP, r.FP, r.FN) for r in result.per_class] == [(1, 1, 0, 0)]
    assert pytest.approx(100.0) == result.All.PQ


def test_crowd_region_never_matches_and_absorbs_same_class_predictions(tmp_path):
    gt = np.zeros((10, 10), np.int64)
    gt[:, :5] = 1  # crowd of persons
    gt[:, 5:] = 2  # car
    pred = np.zeros((10, 10), np.int64)
    pred[:, :5] = 3  # person on the crowd: ignored
    pred[:, 5:] = 4  # car on the ground-truth car: a true positive
    gt_segments = [seg(1, 1, crowd=1), seg(2, 2)]
    result = run(tmp_path, [(gt, gt_segments)], [(pred, [seg(3, 1), seg(4, 2)])])
    assert [(r.category_id, r.TP, r.FP, r.FN) for r in result.per_class] == [(2, 1, 0, 0)]
    pred_other_class = [(pred, [seg(3, 2), seg(4, 2)])]  # a car on a person crowd is a FP
    result = run(tmp_path / "b", [(gt, gt_segments)], pred_other_class)
    assert [(r.category_id, r.TP, r.FP, r.FN) for r in result.per_class] == [(2, 1, 1, 0)]


def test_ids_of_json_and_png_must_agree(tmp_path):
    ids = np.ones((4, 4), np.int64)
    with pytest.raises(ValueError, match=r"0000\.png: segment id 1 is in the PNG, not the JSON"):
        run(tmp_path, [(ids, [seg(1, 1)])], [(ids, [seg(2, 1)])])
    with pytest.raises(ValueError, match=r"segment id 5 is in the JSON, not the PNG"):
        run(tmp_path / "b", [(ids, [seg(1, 1)])], [(ids, [seg(1, 1), seg(5, 2)])])


def test_malformed_json_names_file_and_field(tmp_path):
    gt_json = write_panoptic(tmp_path, "gt", [(np.ones((4, 4), np.int64), [seg(1, 1)])])
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({"annotations": [{"image_id": 0, "segments_info": []}]}))
    with pytest.raises(
        ValueError, match=r"pred\.json: annotations\[0\]: missing field 'file_name'"
    ):
        evaluate_panoptic(gt_json, tmp_path / "gt", pred_json, tmp_path, progress=False)


def random_cells(rng: np.random.Generator, base: np.ndarray | None = None) -> np.ndarray:
    """A 24x24 map of cell labels 0..8 (blocks + 15% pixel noise), perhaps perturbing ``base``."""
    blocks = np.kron(rng.integers(0, 9, size=(6, 6)), np.ones((4, 4), np.int64))
    if base is None:
        base = blocks
    else:  # relabel about a third of the blocks: unmatched segments on both sides
        base = np.where(np.kron(rng.random((6, 6)) < 0.3, np.ones((4, 4), bool)), blocks, base)
    noise = rng.random(base.shape) < 0.15  # jitter boundaries so IoUs vary around 0.5
    return np.where(noise, rng.integers(0, 9, size=base.shape), base)


def cells_to_panoptic(cells: np.ndarray, offset: int) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """Cells -> ids map, segments, and torchmetrics' ``[H,W,2]`` (category, instance) map."""
    categories = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 3, 7: 3, 8: 3}  # 6..8 -> one sky segment
    ids = np.zeros(cells.shape, np.int64)
    cat_map = np.zeros((*cells.shape, 2), np.int64)
    segments = []
    for cell in np.unique(cells):
        category = categories[int(cell)]
        seg_id = offset + (10 if category == 3 else int(cell))
        ids[cells == cell] = seg_id
        cat_map[cells == cell] = (category, 0 if category == 3 else seg_id)
        if not any(s["id"] == seg_id for s in segments):
            segments.append(seg(seg_id, category))
    return ids, segments, cat_map


def test_matches_torchmetrics_on_random_predictions(tmp_path):
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.detection")
    rng = np.random.default_rng(0)
    gt_images, pred_images, gt_maps, pred_maps = [], [], [], []
    for _ in range(8):
        cells = random_cells(rng)
        ids, segments, cat_map = cells_to_panoptic(cells, offset=100)
        void = rng.random(ids.shape) < 0.05  # VOID in the ground truth only
        ids[void], cat_map[void] = 0, (0, 0)
        gt_images.append((ids, [s for s in segments if (ids == s["id"]).any()]))
        gt_maps.append(cat_map)
        pred_ids, pred_segments, pred_map = cells_to_panoptic(random_cells(rng, cells), offset=7)
        pred_images.append((pred_ids, pred_segments))
        pred_maps.append(pred_map)
    ours = run(tmp_path, gt_images, pred_images)
    metric = tm.PanopticQuality(
        things={1, 2}, stuffs={3}, return_sq_and_rq=True, return_per_class=True
    )
    metric.update(torch.as_tensor(np.stack(pred_maps)), torch.as_tensor(np.stack(gt_maps)))
    per_class = metric.compute().numpy()  # [C, 3]: (PQ, SQ, RQ) of categories 1, 2, 3
    for row in ours.per_class:
        expected = per_class[row.category_id - 1] * 100
        assert pytest.approx(tuple(expected), abs=1e-4) == (row.PQ, row.SQ, row.RQ)
    assert len(ours.per_class) == 3
    assert all(row.TP > 0 for row in ours.per_class)
    assert sum(row.FP + row.FN for row in ours.per_class) > 0 and ours.All.SQ < 100
