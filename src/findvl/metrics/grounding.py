"""Grounding metrics (referring / entity / interleaved segmentation): cIoU, mIoU, precision@t.

Ground truth and predictions use one format: a JSON list of ``{"image_id", "entity_id",
"segmentation"}`` with ``segmentation`` a COCO RLE. An entity is the pair (image_id, entity_id).
``cIoU = ΣI / ΣU`` over all entities, ``mIoU`` is the mean per-entity IoU and ``P@t`` the
fraction of entities with ``IoU >= t``. A ground-truth entity without a prediction counts with
``I = 0, U = |GT|``; an entity whose ground truth and prediction are both empty has IoU 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from findvl.jsonio import load_json
from findvl.metrics.io import Rle, field, json_list, percent, rle_from_json

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
EntityKey = tuple[Any, Any]


@dataclass(frozen=True)
class GroundingMetrics:
    """Metrics in percent (``None`` when there is no ground-truth entity)."""

    cIoU: float | None
    mIoU: float | None
    precision: dict[str, float | None]  # "P@0.5" ... "P@0.9"
    num_entities: int
    num_missing: int  # ground-truth entities without a prediction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_masks(path: str | Path) -> dict[EntityKey, Rle]:
    """Read a grounding file into ``{(image_id, entity_id): rle}``; keys must be unique."""
    path = Path(path)
    masks: dict[EntityKey, Rle] = {}
    for i, record in enumerate(json_list(load_json(path), path.name)):
        where = f"{path.name}: [{i}]"
        key = (
            field(record, "image_id", (int, str), where),
            field(record, "entity_id", (int, str), where),
        )
        if "segmentation" not in record:
            raise ValueError(f"{where}: missing field 'segmentation'")
        if key in masks:
            raise ValueError(f"{where}: repeated (image_id, entity_id) = {key}")
        masks[key] = rle_from_json(record["segmentation"], f"{where}: field 'segmentation'")
    return masks


def intersection_union(gt: Rle, pred: Rle | None) -> tuple[int, int]:
    """``(|G∩P|, |G∪P|)`` in pixels of two RLEs of the same size (``pred`` None: empty)."""
    gt_area = int(mask_utils.area(gt))
    if pred is None:
        return 0, gt_area
    inter = int(mask_utils.area(mask_utils.merge([gt, pred], intersect=True)))
    return inter, gt_area + int(mask_utils.area(pred)) - inter


def grounding_metrics(
    inter: np.ndarray, union: np.ndarray, num_missing: int = 0
) -> GroundingMetrics:
    """Metrics from per-entity ``inter[N]`` and ``union[N]`` pixel counts."""
    inter, union = np.asarray(inter, np.float64), np.asarray(union, np.float64)
    if inter.size == 0:
        precision = {f"P@{t}": None for t in THRESHOLDS}
        return GroundingMetrics(None, None, precision, num_entities=0, num_missing=num_missing)
    iou = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    total = union.sum()
    return GroundingMetrics(
        cIoU=percent(inter.sum() / total) if total else 100.0,
        mIoU=percent(iou.mean()),
        precision={f"P@{t}": percent((iou >= t).mean()) for t in THRESHOLDS},
        num_entities=int(inter.size),
        num_missing=num_missing,
    )


def evaluate_grounding(gt_path: str | Path, pred_path: str | Path) -> GroundingMetrics:
    """Score a prediction file against a ground-truth file (both in the grounding format)."""
    _, inter, union, missing = _entity_counts(gt_path, pred_path)
    return grounding_metrics(inter, union, num_missing=int(missing.sum()))


def evaluate_grounding_groups(
    gt_path: str | Path, pred_path: str | Path, groups: dict[EntityKey, str]
) -> dict[str, GroundingMetrics]:
    """:func:`evaluate_grounding` of each group of entities apart (e.g. ``"things"`` and
    ``"stuff"``: cIoU sums pixels, so a few large regions outweigh many small objects);
    ``groups`` maps an entity to its group name, entities it does not name are left out."""
    keys, inter, union, missing = _entity_counts(gt_path, pred_path)
    names = np.array([groups.get(k, "") for k in keys], dtype=object)
    return {
        name: grounding_metrics(
            inter[names == name], union[names == name], int(missing[names == name].sum())
        )
        for name in sorted(set(groups.values()))
    }


def _entity_counts(gt_path: str | Path, pred_path: str | Path):
    """Per ground-truth entity: keys, ``|G∩P|``, ``|G∪P|`` and whether its prediction is
    missing."""
    gt_name, pred_name = Path(gt_path).name, Path(pred_path).name
    gt, pred = load_masks(gt_path), load_masks(pred_path)
    unknown = [k for k in pred if k not in gt]
    if unknown:
        raise ValueError(f"{pred_name}: (image_id, entity_id) = {unknown[0]} is not in {gt_name}")
    inter, union = np.zeros(len(gt), np.int64), np.zeros(len(gt), np.int64)
    for i, (key, gt_rle) in enumerate(gt.items()):
        pred_rle = pred.get(key)
        if pred_rle is not None and list(pred_rle["size"]) != list(gt_rle["size"]):
            raise ValueError(
                f"{pred_name}: {key}: mask size {list(pred_rle['size'])} differs from "
                f"{gt_name} {list(gt_rle['size'])}"
            )
        inter[i], union[i] = intersection_union(gt_rle, pred_rle)
    missing = np.array([k not in pred for k in gt], dtype=bool)
    return list(gt), inter, union, missing
