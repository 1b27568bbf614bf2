"""Grounding metrics on hand-computed masks and the file format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from findvl.metrics.grounding import evaluate_grounding, evaluate_grounding_groups
from findvl.metrics.io import rle_to_json


def box(top: int, left: int, height: int, width: int, shape=(10, 10)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + height, left : left + width] = True
    return mask


def write(path, items):
    records = [{"image_id": i, "entity_id": e, "segmentation": rle_to_json(m)} for i, e, m in items]
    path.write_text(json.dumps(records))
    return path


def test_hand_computed(tmp_path):
    gt = write(
        tmp_path / "gt.json",
        [
            (1, 0, box(0, 0, 4, 4)),  # 16 px
            (1, 1, box(5, 5, 5, 5)),  # 25 px
            (2, "dog", box(0, 0, 2, 5)),  # 10 px, no prediction
        ],
    )
    pred = write(
        tmp_path / "pred.json",
        [
            (1, 0, box(0, 0, 4, 2)),  # I 8, U 16 -> 0.5
            (1, 1, box(5, 5, 5, 5)),  # I 25, U 25 -> 1
        ],
    )
    result = evaluate_grounding(gt, pred)
    assert result.cIoU == pytest.approx(100 * (8 + 25) / (16 + 25 + 10))
    assert result.mIoU == pytest.approx(100 * (0.5 + 1 + 0) / 3)
    assert result.precision["P@0.5"] == pytest.approx(200 / 3)
    assert result.precision["P@0.6"] == pytest.approx(100 / 3)
    assert (result.num_entities, result.num_missing) == (3, 1)


def test_groups_are_scored_apart(tmp_path):
    gt = write(
        tmp_path / "gt.json",
        [(1, 0, box(0, 0, 4, 4)), (1, 1, box(5, 5, 5, 5)), (2, 0, box(0, 0, 2, 5))],
    )
    pred = write(tmp_path / "pred.json", [(1, 0, box(0, 0, 4, 2)), (1, 1, box(5, 5, 5, 5))])
    groups = {(1, 0): "things", (2, 0): "things", (1, 1): "stuff"}
    parts = evaluate_grounding_groups(gt, pred, groups)
    assert sorted(parts) == ["stuff", "things"]
    assert parts["things"].cIoU == pytest.approx(100 * 8 / (16 + 10))
    assert (parts["things"].num_entities, parts["things"].num_missing) == (2, 1)
    assert parts["stuff"].cIoU == pytest.approx(100.0) and parts["stuff"].num_missing == 0


def test_empty_files(tmp_path):
    gt = write(tmp_path / "gt.json", [(1, 0, box(0, 0, 2, 2))])
    empty = write(tmp_path / "pred.json", [])
    result = evaluate_grounding(gt, empty)
    assert (result.cIoU, result.mIoU, result.precision["P@0.5"]) == (0.0, 0.0, 0.0)
    none = evaluate_grounding(empty, empty)
    assert none.num_entities == 0 and none.cIoU is None


def test_errors_name_file_and_field(tmp_path):
    gt = write(tmp_path / "gt.json", [(1, 0, box(0, 0, 2, 2))])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"image_id": 1, "entity_id": 0}]))
    with pytest.raises(ValueError, match=r"pred\.json: \[0\]: missing field 'segmentation'"):
        evaluate_grounding(gt, pred)
    write(pred, [(1, 0, box(0, 0, 2, 2, shape=(5, 5)))])
    with pytest.raises(ValueError, match=r"pred\.json: \(1, 0\): mask size \[5, 5\] differs"):
        evaluate_grounding(gt, pred)
    write(pred, [(3, 0, box(0, 0, 2, 2))])
    with pytest.raises(ValueError, match=r"\(3, 0\) is not in gt\.json"):
        evaluate_grounding(gt, pred)
    write(pred, [(1, 0, box(0, 0, 2, 2)), (1, 0, box(0, 0, 2, 2))])
    with pytest.raises(ValueError, match=r"pred\.json: \[1\]: repeated"):
        evaluate_grounding(gt, pred)
    pred.write_text(
        json.dumps(
            [{"image_id": 1, "entity_id": 0, "segmentation": {"size": [10, 10], "counts": [3, 4]}}]
        )
    )
    with pytest.raises(ValueError, match=r"\[0\]: field 'segmentation': field 'counts'"):
        evaluate_grounding(gt, pred)


def test_uncompressed_rle_is_accepted(tmp_path):
    gt = write(tmp_path / "gt.json", [(1, 0, box(0, 0, 10, 5))])  # column-major: first 50 px
    pred = tmp_path / "pred.json"
    pred.write_text(
        json.dumps(
            [
                {
                    "image_id": 1,
                    "entity_id": 0,
                    "segmentation": {"size": [10, 10], "counts": [0, 25, 75]},
                }
            ]
        )
    )
    assert evaluate_grounding(gt, pred).mIoU == pytest.approx(50.0)
