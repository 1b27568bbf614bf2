"""Readers of COCO instances / panoptic / captions and RefCOCO-style refs (JSON).

Masks: instance segmentations may be polygons, uncompressed RLE or compressed RLE (decoded with
pycocotools); panoptic PNGs encode the segment id of each pixel as ``R + 256*G + 256**2*B``,
id 0 is VOID (no segment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from findvl.images import read_label_png
from findvl.jsonio import get_field, get_int, get_list, load_json
from findvl.panoptic_ids import Category, rgb2id


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    height: int
    width: int


def _read_categories(data: Any, where: str) -> list[Category]:
    out = []
    for i, record in enumerate(get_list(data, "categories", where)):
        w = f"{where}: categories[{i}]"
        isthing = bool(get_int(record, "isthing", w)) if "isthing" in record else True
        out.append(Category(get_int(record, "id", w), get_field(record, "name", str, w), isthing))
    return out


def _read_images(data: Any, where: str) -> list[CocoImage]:
    out = []
    for i, record in enumerate(get_list(data, "images", where)):
        w = f"{where}: images[{i}]"
        out.append(
            CocoImage(
                get_int(record, "id", w),
                get_field(record, "file_name", str, w),
                get_int(record, "height", w),
                get_int(record, "width", w),
            )
        )
    return out


def _read_bbox(record: dict, where: str) -> tuple[float, float, float, float]:
    bbox = get_list(record, "bbox", where)
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        raise ValueError(f"{where}.bbox: expected [x, y, w, h], got {bbox!r:.80}")
    return tuple(float(v) for v in bbox)


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic image; ``bbox`` is ``(x, y, w, h)``, ``area`` in pixels."""

    id: int
    category_id: int
    isthing: bool
    bbox: tuple[float, float, float, float]
    area: int
    iscrowd: bool


@dataclass(frozen=True)
class PanopticImage:
    """A panoptic annotation: the image, its segments and the PNG that holds their pixels."""

    image_id: int
    file_name: str
    height: int
    width: int
    segments: tuple[Segment, ...]
    image_path: Path
    segmentation_path: Path

    def segment_ids(self) -> np.ndarray:
        """``[H,W]`` int64 segment id per pixel (0: VOID)."""
        if not self.segmentation_path.is_file():
            raise FileNotFoundError(f"{self.segmentation_path}: no such panoptic PNG")
        return rgb2id(read_label_png(self.segmentation_path, rgb=True))

    def load_masks(self) -> np.ndarray:
        """``[N,H,W]`` bool masks of ``segments`` (same order)."""
        ids = self.segment_ids()
        if ids.shape != (self.height, self.width):
            raise ValueError(
                f"{self.segmentation_path}: size {ids.shape[::-1]} differs from the "
                f"annotated {self.width}x{self.height}"
            )
        segment_ids = np.array([s.id for s in self.segments], dtype=np.int64)
        return ids[None, :, :] == segment_ids[:, None, None]


#: Environment variable that lets dataset file names point outside the dataset root.
ALLOW_OUTSIDE_ROOT_ENV = "FINDVL_ALLOW_OUTSIDE_ROOT"


def confined(root: str | Path, name: str, where: str) -> Path:
    """``root / name``, refusing an absolute ``name`` or one with ``..`` parts unless
    ``--allow-outside-root`` (``FINDVL_ALLOW_OUTSIDE_ROOT=1``) is set. Symbolic links inside
    the dataset are followed (a dataset may link its image folder elsewhere)."""
    path = Path(root) / name
    if os.environ.get(ALLOW_OUTSIDE_ROOT_ENV) == "1":
        return path
    if Path(name).is_absolute() or ".." in Path(name).parts or not name:
        raise ValueError(
            f"{where}: file name {name!r} points outside {root} (pass --allow-outside-root "
            "to read it anyway)"
        )
    return path


def read_panoptic(
    json_path: str | Path, panoptic_dir: str | Path, image_dir: str | Path
) -> tuple[list[PanopticImage], list[Category]]:
    """Read a COCO panoptic JSON; PNGs are found in ``panoptic_dir``, images in ``image_dir``."""
    data = load_json(json_path)
    categories = _read_categories(data, f"{json_path}")
    isthing = {c.id: c.isthing for c in categories}
    images = {im.id: im for im in _read_images(data, f"{json_path}")}
    out = []
    for i, record in enumerate(get_list(data, "annotations", f"{json_path}")):
        where = f"{json_path}: annotations[{i}]"
        image_id = get_int(record, "image_id", where)
        if image_id not in images:
            raise ValueError(f"{where}.image_id: {image_id} is not in images")
        segments = []
        for j, seg in enumerate(get_list(record, "segments_info", where)):
            w = f"{where}.segments_info[{j}]"
            category_id = get_int(seg, "category_id", w)
            if category_id not in isthing:
                raise ValueError(f"{w}.category_id: {category_id} is not in categories")
            segments.append(
                Segment(
                    get_int(seg, "id", w),
                    category_id,
                    isthing[category_id],
                    _read_bbox(seg, w),
                    get_int(seg, "area", w),
                    bool(seg.get("iscrowd", 0)),
                )
            )
        image = images[image_id]
        out.append(
            PanopticImage(
                image_id,
                image.file_name,
                image.height,
                image.width,
                tuple(segments),
                confined(image_dir, image.file_name, f"{json_path}: images (id {image_id})"),
                confined(
                    panoptic_dir, get_field(record, "file_name", str, where), f"{where}.file_name"
                ),
            )
        )
    return out, categories


def decode_segmentation(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """COCO ``segmentation`` (polygons, RLE or compressed RLE) -> ``[H,W]`` bool mask."""
    try:
        if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
        else:
            raise ValueError("expected polygons or an RLE with 'size' and 'counts'")
        mask = mask_utils.decode(rle)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise ValueError(f"{where}.segmentation: cannot decode ({error})") from error
    if mask.shape[:2] != (height, width):
        raise ValueError(
            f"{where}.segmentation: size {mask.shape[:2]} != image ({height}, {width})"
        )
    return mask.astype(bool)


@dataclass(frozen=True)
class InstanceAnnotation:
    """A COCO instance; ``segmentation`` is kept as in the file (:func:`decode_segmentation`)."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float
    iscrowd: bool
    segmentation: Any

    def decode(self, height: int, width: int) -> np.ndarray:
        """``[H,W]`` bool mask."""
        return decode_segmentation(self.segmentation, height, width, f"annotation {self.id}")


@dataclass
class InstancesFile:
    images: list[CocoImage]
    annotations: list[InstanceAnnotation]
    categories: list[Category]


def read_instances(path: str | Path) -> InstancesFile:
    """Read a COCO instances JSON."""
    data = load_json(path)
    annotations = []
    for i, record in enumerate(get_list(data, "annotations", f"{path}")):
        w = f"{path}: annotations[{i}]"
        annotations.append(
            InstanceAnnotation(
                get_int(record, "id", w),
                get_int(record, "image_id", w),
                get_int(record, "category_id", w),
                _read_bbox(record, w),
                float(get_field(record, "area", float, w)),
                bool(record.get("iscrowd", 0)),
                get_field(record, "segmentation", (list, dict), w),
            )
        )
    return InstancesFile(
        _read_images(data, f"{path}"), annotations, _read_categories(data, f"{path}")
    )


@dataclass(frozen=True)
class Caption:
    id: int
    image_id: int
    caption: str


def read_captions(path: str | Path) -> list[Caption]:
    """Read a COCO captions JSON (``annotations[]`` of ``{id, image_id, caption}``)."""
    data = load_json(path)
    out = []
    for i, record in enumerate(get_list(data, "annotations", f"{path}")):
        w = f"{path}: annotations[{i}]"
        text = get_field(record, "caption", str, w)
        if not text.strip():
            raise ValueError(f"{w}.caption: empty text")
        out.append(Caption(get_int(record, "id", w), get_int(record, "image_id", w), text))
    return out


@dataclass(frozen=True)
class RefSentence:
    sent: str
    tokens: tuple[str, ...]
    sent_id: int


@dataclass(frozen=True)
class Ref:
    """A RefCOCO-style referring expression group: sentences that all name instance ``ann_id``."""

    ref_id: int
    image_id: int
    ann_id: int
    category_id: int
    split: str
    sentences: tuple[RefSentence, ...]


def read_refs(path: str | Path) -> list[Ref]:
    """Read refs JSON: a list (or ``{"refs": [...]}``) of RefCOCO records."""
    data = load_json(path)
    records = get_list(data, "refs", f"{path}") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(records).__name__}")
    out = []
    for i, record in enumerate(records):
        w = f"{path}: [{i}]"
        sentences = []
        for j, s in enumerate(get_list(record, "sentences", w)):
            ws = f"{w}.sentences[{j}]"
            sent = get_field(s, "sent", str, ws)
            if not sent.strip():
                raise ValueError(f"{ws}.sent: empty text")
            tokens = tuple(sent.split())
            if "tokens" in s:
                tokens = tuple(get_list(s, "tokens", ws))
                if not all(isinstance(token, str) for token in tokens):
                    raise ValueError(f"{ws}.tokens: expected a list of strings, got {tokens!r:.80}")
            sentences.append(RefSentence(sent, tokens, get_int(s, "sent_id", ws)))
        out.append(
            Ref(
                get_int(record, "ref_id", w),
                get_int(record, "image_id", w),
                get_int(record, "ann_id", w),
                get_int(record, "category_id", w),
                str(record.get("split", "")),
                tuple(sentences),
            )
        )
    return out
