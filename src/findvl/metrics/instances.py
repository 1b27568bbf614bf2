"""COCO instance metrics (AP, AP50, AP75, APs, APm, APl) via pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from findvl.jsonio import load_json
from findvl.metrics.io import (
    check_rle_size,
    expect_type,
    field,
    finite_number,
    json_list,
    percent,
    rle_from_json,
    xywh_box,
)

# COCOeval.stats indices of the six reported numbers.
_STAT_INDEX = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5}


@dataclass(frozen=True)
class ApMetrics:
    """COCO average precision in percent; ``None`` where no ground truth exists (COCOeval's -1)."""

    AP: float | None
    AP50: float | None
    AP75: float | None
    APs: float | None
    APm: float | None
    APl: float | None


@dataclass(frozen=True)
class InstanceMetrics:
    """``segm`` / ``bbox`` metrics (``None`` when the predictions carry no masks / boxes)."""

    segm: ApMetrics | None
    bbox: ApMetrics | None
    num_images: int
    num_predictions: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet_coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_instances_gt(path: str | Path) -> COCO:
    """A COCO instances file as a pycocotools ``COCO`` object, checked for the fields it needs."""
    path = Path(path)
    data = load_json(path)
    expect_type(data, dict, path.name)
    for key in ("images", "annotations", "categories"):
        json_list(data, path.name, key)
    sizes: dict[Any, tuple[int, int] | None] = {}
    for i, image in enumerate(data["images"]):
        where = f"{path.name}: images[{i}]"
        image_id = field(image, "id", (int, str), where)
        if image_id in sizes:
            raise ValueError(f"{where}: duplicate image id {image_id!r}")
        sizes[image_id] = _image_size(image, where)
    categories: set[int] = set()
    for i, category in enumerate(data["categories"]):
        category_id = field(category, "id", int, f"{path.name}: categories[{i}]")
        if category_id in categories:
            raise ValueError(f"{path.name}: categories[{i}]: duplicate category id {category_id}")
        categories.add(category_id)
    ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        where = f"{path.name}: annotations[{i}]"
        for name, kind in (("id", int), ("image_id", (int, str)), ("category_id", int)):
            field(ann, name, kind, where)
        if ann["id"] in ann_ids:
            raise ValueError(f"{where}: duplicate annotation id {ann['id']}")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in sizes:
            raise ValueError(f"{where}: field 'image_id': {ann['image_id']!r} not in images")
        if ann["category_id"] not in categories:
            raise ValueError(
                f"{where}: field 'category_id': {ann['category_id']} not in categories"
            )
        ann["bbox"] = xywh_box(field(ann, "bbox", list, where), f"{where}: field 'bbox'")
        if "segmentation" in ann:
            ann["segmentation"] = _gt_segmentation(
                ann["segmentation"], sizes[ann["image_id"]], f"{where}: field 'segmentation'"
            )
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        else:
            finite_number(ann["area"], f"{where}: field 'area'")
    return _quiet_coco(data)


def _image_size(image: dict[str, Any], where: str) -> tuple[int, int] | None:
    """``(height, width)`` of an images record, None when it gives neither."""
    if "height" not in image and "width" not in image:
        return None
    height, width = field(image, "height", int, where), field(image, "width", int, where)
    if height < 1 or width < 1:
        raise ValueError(f"{where}: height and width must be positive, got {height}x{width}")
    return height, width


def _gt_segmentation(value: Any, size: tuple[int, int] | None, where: str) -> Any:
    """Polygons (lists of ``x, y`` numbers) or an RLE of the image's size."""
    if isinstance(value, list):
        for j, polygon in enumerate(value):
            expect_type(polygon, list, f"{where}[{j}]")
            if len(polygon) < 6 or len(polygon) % 2:
                raise ValueError(f"{where}[{j}]: a polygon needs an even number (>= 6) of values")
            for v in polygon:
                finite_number(v, f"{where}[{j}]")
        if size is None and value:
            raise ValueError(f"{where}: polygons need the image's height and width")
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"{where}: expected polygons (a list) or an RLE object, got {type(value).__name__}"
        )
    rle = rle_from_json(value, where)
    if size is not None:
        check_rle_size(rle, *size, where)
    return rle


def load_instance_predictions(path: str | Path, gt: COCO) -> list[dict[str, Any]]:
    """COCO results records: ``image_id, category_id, score`` + ``segmentation`` and/or ``bbox``."""
    path = Path(path)
    records = json_list(load_json(path), path.name)
    image_ids, category_ids = set(gt.getImgIds()), set(gt.getCatIds())
    sizes = {
        i: (im["height"], im["width"])
        for i, im in gt.imgs.items()
        if "height" in im and "width" in im
    }
    for i, record in enumerate(records):
        where = f"{path.name}: [{i}]"
        if field(record, "image_id", (int, str), where) not in image_ids:
            raise ValueError(
                f"{where}: field 'image_id': {record['image_id']!r} not in ground truth"
            )
        if field(record, "category_id", int, where) not in category_ids:
            raise ValueError(f"{where}: field 'category_id': {record['category_id']} unknown")
        finite_number(field(record, "score", (int, float), where), f"{where}: field 'score'")
        if "segmentation" not in record and "bbox" not in record:
            raise ValueError(f"{where}: missing field 'segmentation' (or 'bbox')")
        if "segmentation" in record:
            rle = rle_from_json(record["segmentation"], f"{where}: segmentation")
            if record["image_id"] in sizes:
                check_rle_size(rle, *sizes[record["image_id"]], f"{where}: segmentation")
            record["segmentation"] = rle
        if "bbox" in record:
            record["bbox"] = xywh_box(field(record, "bbox", list, where), f"{where}: field 'bbox'")
    kinds = [("segmentation" in r, "bbox" in r) for r in records]
    if len(set(kinds)) > 1:
        raise ValueError(f"{path.name}: records mix masks and boxes inconsistently")
    return records


def _results_coco(gt: COCO, records: list[dict[str, Any]], iou_type: str) -> COCO:
    """COCO results object; unlike ``COCO.loadRes`` it accepts an empty list."""
    anns = []
    for i, record in enumerate(records):
        ann = {k: record[k] for k in ("image_id", "category_id", "score")}
        ann["id"], ann["iscrowd"] = i + 1, 0
        if iou_type == "segm":
            ann["segmentation"] = record["segmentation"]
            ann["area"] = float(mask_utils.area(record["segmentation"]))
            ann["bbox"] = [float(v) for v in mask_utils.toBbox(record["segmentation"])]
        else:
            x, y, w, h = (float(v) for v in record["bbox"])
            ann["bbox"], ann["area"] = [x, y, w, h], w * h
        anns.append(ann)
    dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"]}
    return _quiet_coco({**dataset, "annotations": anns})


def coco_ap(gt: COCO, records: list[dict[str, Any]], iou_type: str) -> ApMetrics:
    """Run COCOeval (``iou_type`` ``"segm"`` or ``"bbox"``) with its printing silenced."""
    evaluator = COCOeval(gt, _results_coco(gt, records, iou_type), iouType=iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats)
    values = {k: (None if stats[i] < 0 else percent(stats[i])) for k, i in _STAT_INDEX.items()}
    return ApMetrics(**values)


def evaluate_instances(gt_path: str | Path, pred_path: str | Path) -> InstanceMetrics:
    """AP for masks (when predictions have ``segmentation``) and boxes (when they have ``bbox``).

    An empty prediction list scores 0 wherever ground truth exists.
    """
    gt = load_instances_gt(gt_path)
    records = load_instance_predictions(pred_path, gt)
    has_masks = not records or "segmentation" in records[0]
    has_boxes = bool(records) and "bbox" in records[0]
    if has_masks:
        for ann in gt.dataset["annotations"]:
            if "segmentation" not in ann:
                raise ValueError(
                    f"{Path(gt_path).name}: annotation id {ann['id']}: missing field 'segmentation'"
                )
    return InstanceMetrics(
        segm=coco_ap(gt, records, "segm") if has_masks else None,
        bbox=coco_ap(gt, records, "bbox") if has_boxes else None,
        num_images=len(gt.getImgIds()),
        num_predictions=len(records),
    )
