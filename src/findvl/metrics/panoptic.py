"""Panoptic quality (PQ, SQ, RQ) on COCO panoptic files, with panopticapi's definitions.

Per image both PNGs are turned into segment ids (``rgb2id``); id 0 is VOID (unlabeled).
A predicted and a ground-truth segment of the same category match when
``IoU = |P∩G| / (|P| + |G| - |P∩G| - |P∩VOID|) > 0.5``; crowd ground truth never matches.
Unmatched non-crowd ground truth is a false negative. An unmatched prediction is a false
positive unless more than half of it lies in VOID or in crowd regions of its own category.
Per category ``PQ = ΣIoU / (TP + FP/2 + FN/2)``, ``SQ = ΣIoU / TP``, ``RQ = TP / (TP + FP/2 +
FN/2)``; the averages run over categories with ``TP + FP + FN > 0``.

Differences from panopticapi, none of which changes COCO results: ground-truth areas are
counted in the PNG (panopticapi reads the JSON ``area``, which COCO keeps equal to it), several
crowd regions of one category are all ignored (panopticapi keeps the last one; COCO has at most
one), and a ground-truth image without a prediction entry counts as an empty prediction.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from findvl.jsonio import load_json
from findvl.metrics.io import expect_type, field, json_list, percent, read_png
from findvl.panoptic_ids import Category, rgb2id

VOID_ID = 0  # segment id of unlabeled pixels in a COCO panoptic PNG


@dataclass(frozen=True)
class ImageSegments:
    """One ``annotations[]`` entry: its PNG and, per segment, ``ids``/``category_ids``/``crowd``."""

    image_id: int | str
    file_name: str
    ids: np.ndarray  # [S] int64 segment ids, sorted (never VOID_ID)
    category_ids: np.ndarray  # [S] int64
    crowd: np.ndarray  # [S] bool


@dataclass(frozen=True)
class PqSummary:
    """Averages in percent over ``n`` categories with ``TP + FP + FN > 0`` (0 when ``n == 0``)."""

    PQ: float
    SQ: float
    RQ: float
    n: int


@dataclass(frozen=True)
class ClassPq:
    """One category's PQ, SQ, RQ in percent and its counts."""

    category_id: int
    name: str
    isthing: bool
    PQ: float
    SQ: float
    RQ: float
    TP: int
    FP: int
    FN: int


@dataclass(frozen=True)
class PanopticMetrics:
    """``All`` / ``Things`` / ``Stuff`` summaries and ``per_class`` rows (categories that occur)."""

    All: PqSummary
    Things: PqSummary
    Stuff: PqSummary
    per_class: list[ClassPq]
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_categories(data: dict[str, Any], name: str) -> dict[int, Category]:
    """``categories[]`` of a panoptic JSON (``id``, ``name``, ``isthing``) keyed by id."""
    categories = {}
    for i, cat in enumerate(json_list(data, name, "categories")):
        where = f"{name}: categories[{i}]"
        cat_id = field(cat, "id", int, where)
        if cat_id in categories:
            raise ValueError(f"{where}: duplicate category id {cat_id}")
        isthing = field(cat, "isthing", (int, bool), where)
        categories[cat_id] = Category(cat_id, str(cat.get("name", cat_id)), bool(isthing))
    return categories


def load_segments(
    data: dict[str, Any], name: str, categories: dict[int, Category]
) -> list[ImageSegments]:
    """``annotations[]`` of a panoptic JSON, validated (known categories, unique non-zero ids)."""
    images = []
    seen: dict[Any, int] = {}
    for i, ann in enumerate(json_list(data, name, "annotations")):
        where = f"{name}: annotations[{i}]"
        image_id = field(ann, "image_id", (int, str), where)
        if image_id in seen:
            raise ValueError(
                f"{where}: image_id {image_id!r} already annotated in annotations[{seen[image_id]}]"
            )
        seen[image_id] = i
        file_name = field(ann, "file_name", str, where)
        if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
            raise ValueError(
                f"{where}: field 'file_name': {file_name!r} must be a path inside the PNG folder"
            )
        ids, cats, crowd = [], [], []
        for j, seg in enumerate(field(ann, "segments_info", list, where)):
            seg_where = f"{where}: segments_info[{j}]"
            seg_id = field(seg, "id", int, seg_where)
            cat_id = field(seg, "category_id", int, seg_where)
            if seg_id <= VOID_ID or seg_id in ids:
                raise ValueError(f"{seg_where}: field 'id': {seg_id} is VOID or repeated")
            if cat_id not in categories:
                raise ValueError(f"{seg_where}: field 'category_id': unknown category {cat_id}")
            ids.append(seg_id)
            cats.append(cat_id)
            crowd.append(bool(expect_type(seg.get("iscrowd", 0), (int, bool), seg_where)))
        order = np.argsort(ids, kind="stable")
        images.append(
            ImageSegments(
                image_id,
                file_name,
                np.array(ids, np.int64)[order],
                np.array(cats, np.int64)[order],
                np.array(crowd, bool)[order],
            )
        )
    return images


def _segment_index(ids: np.ndarray, segments: ImageSegments, png: Path) -> np.ndarray:
    """``[H*W]`` index of each pixel's segment: 0 for VOID, ``1 + i`` for ``segments.ids[i]``.

    ``segments.ids`` is sorted; a PNG id missing from the JSON raises an error naming it.
    """
    keys = np.concatenate([[VOID_ID], segments.ids])
    flat = ids.ravel()
    index = np.minimum(np.searchsorted(keys, flat), len(keys) - 1)
    wrong = keys[index] != flat
    if wrong.any():
        bad = int(flat[np.argmax(wrong)])
        raise ValueError(f"{png.name}: segment id {bad} is in the PNG, not the JSON")
    return index


def _check_areas(area: np.ndarray, segments: ImageSegments, png: Path) -> None:
    if (area == 0).any():
        bad = int(segments.ids[np.argmax(area == 0)])
        raise ValueError(f"{png.name}: segment id {bad} is in the JSON, not the PNG")


def _read_ids(path: Path) -> np.ndarray:
    return rgb2id(read_png(path, modes=("RGB",)))


@dataclass
class _ImageCounts:
    """Per-image contributions: category ids of TPs (with IoUs), FPs and FNs."""

    tp_categories: np.ndarray
    tp_ious: np.ndarray
    fp_categories: np.ndarray
    fn_categories: np.ndarray


def match_image(
    gt_ids: np.ndarray,
    gt: ImageSegments,
    pred_ids: np.ndarray,
    pred: ImageSegments,
    gt_png: Path,
    pred_png: Path,
) -> _ImageCounts:
    """Match the segments of one image.

    Args:
        gt_ids: ``[H,W]`` ground-truth segment ids (0 = VOID).
        gt: the ground-truth segments of the image.
        pred_ids: ``[H,W]`` predicted segment ids (0 = not assigned).
        pred: the predicted segments of the image.
        gt_png / pred_png: file names for error messages.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"{pred_png.name}: size {pred_ids.shape} differs from {gt_png.name} {gt_ids.shape}"
        )
    g_index = _segment_index(gt_ids, gt, gt_png)
    p_index = _segment_index(pred_ids, pred, pred_png)
    num_pred = len(pred.ids) + 1
    # pixel pair counts [1 + S_gt, 1 + S_pred]; row / column 0 is VOID
    counts = np.bincount(g_index * num_pred + p_index, minlength=(len(gt.ids) + 1) * num_pred)
    counts = counts.reshape(len(gt.ids) + 1, num_pred)
    gt_area, pred_area = counts[1:].sum(axis=1), counts[:, 1:].sum(axis=0)
    _check_areas(gt_area, gt, gt_png)
    _check_areas(pred_area, pred, pred_png)
    inter, pred_void = counts[1:, 1:], counts[0, 1:]

    same = gt.category_ids[:, None] == pred.category_ids[None, :]
    union = gt_area[:, None] + pred_area[None, :] - inter - pred_void[None, :]
    iou = inter / np.maximum(union, 1)
    matched = same & ~gt.crowd[:, None] & (iou > 0.5)
    gt_rows, pred_cols = np.nonzero(matched)
    gt_matched = matched.any(axis=1)
    pred_matched = matched.any(axis=0)
    crowd_same = (inter * (same & gt.crowd[:, None])).sum(axis=0)
    ignored = (pred_void + crowd_same) / np.maximum(pred_area, 1) > 0.5
    return _ImageCounts(
        tp_categories=gt.category_ids[gt_rows],
        tp_ious=iou[gt_rows, pred_cols],
        fp_categories=pred.category_ids[~pred_matched & ~ignored],
        fn_categories=gt.category_ids[~gt_matched & ~gt.crowd],
    )


def _summary(rows: list[ClassPq]) -> PqSummary:
    if not rows:
        return PqSummary(PQ=0.0, SQ=0.0, RQ=0.0, n=0)
    mean = {k: float(np.mean([getattr(r, k) for r in rows])) for k in ("PQ", "SQ", "RQ")}
    return PqSummary(**mean, n=len(rows))


def summarize(
    categories: dict[int, Category], counts: list[_ImageCounts], num_images: int
) -> PanopticMetrics:
    """Per-category PQ/SQ/RQ from per-image counts, then All / Things / Stuff averages."""

    def total(name: str, weights: str | None = None) -> dict[int, float]:
        out: dict[int, float] = {c: 0.0 for c in categories}
        for item in counts:
            values = getattr(item, weights) if weights else np.ones(len(getattr(item, name)))
            for cat, value in zip(getattr(item, name).tolist(), np.asarray(values).tolist()):
                out[cat] += value
        return out

    tp, iou = total("tp_categories"), total("tp_categories", "tp_ious")
    fp, fn = total("fp_categories"), total("fn_categories")
    rows = []
    for cat_id, cat in sorted(categories.items()):
        denominator = tp[cat_id] + 0.5 * fp[cat_id] + 0.5 * fn[cat_id]
        if denominator == 0:
            continue
        sq = iou[cat_id] / tp[cat_id] if tp[cat_id] else 0.0
        rq = tp[cat_id] / denominator
        rows.append(
            ClassPq(
                cat_id,
                cat.name,
                cat.isthing,
                percent(sq * rq),
                percent(sq),
                percent(rq),
                int(tp[cat_id]),
                int(fp[cat_id]),
                int(fn[cat_id]),
            )
        )
    return PanopticMetrics(
        All=_summary(rows),
        Things=_summary([r for r in rows if r.isthing]),
        Stuff=_summary([r for r in rows if not r.isthing]),
        per_class=rows,
        num_images=num_images,
    )


def _pairs(gt_images: list[ImageSegments], pred_by_id: dict[Any, ImageSegments]) -> Iterator[tuple]:
    for gt in gt_images:
        yield gt, pred_by_id.get(gt.image_id)


def evaluate_panoptic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
) -> PanopticMetrics:
    """PQ of a COCO panoptic prediction (JSON + PNG folder) against the ground truth.

    Args:
        gt_json / gt_dir: ground-truth panoptic JSON (with ``categories``) and its PNG folder.
        pred_json / pred_dir: predicted JSON (``annotations`` only needed) and its PNG folder.
        workers: threads reading and matching images (PNG decoding releases the GIL).
        progress: show a progress bar on stderr.
    """
    gt_json, pred_json, gt_dir, pred_dir = (
        Path(gt_json),
        Path(pred_json),
        Path(gt_dir),
        Path(pred_dir),
    )
    gt_data, pred_data = load_json(gt_json), load_json(pred_json)
    categories = load_categories(expect_type(gt_data, dict, gt_json.name), gt_json.name)
    gt_images = load_segments(gt_data, gt_json.name, categories)
    pred_images = load_segments(
        expect_type(pred_data, dict, pred_json.name), pred_json.name, categories
    )
    pred_by_id = {p.image_id: p for p in pred_images}
    unknown = set(pred_by_id) - {g.image_id for g in gt_images}
    if unknown:
        raise ValueError(
            f"{pred_json.name}: image_id {sorted(map(str, unknown))[0]} not in {gt_json.name}"
        )

    def one(pair: tuple[ImageSegments, ImageSegments | None]) -> _ImageCounts:
        gt, pred = pair
        gt_png = gt_dir / gt.file_name
        gt_ids = _read_ids(gt_png)
        if pred is None:  # no prediction entry: an empty prediction
            empty = np.zeros(0, np.int64)
            pred = ImageSegments(gt.image_id, gt.file_name, empty, empty, np.zeros(0, bool))
            return match_image(gt_ids, gt, np.zeros_like(gt_ids), pred, gt_png, gt_png)
        pred_png = pred_dir / pred.file_name
        return match_image(gt_ids, gt, _read_ids(pred_png), pred, gt_png, pred_png)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(one, _pairs(gt_images, pred_by_id))
        counts = list(tqdm(results, total=len(gt_images), desc="PQ", disable=not progress))
    return summarize(categories, counts, num_images=len(gt_images))
