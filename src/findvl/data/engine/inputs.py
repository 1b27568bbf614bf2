"""Read a COCO-style split (panoptic segments + captions) into the data engine's image records.

Files: ``DIR/annotations/panoptic_{split}.json`` (COCO panoptic: ``images``, ``annotations`` with
``segments_info``, ``categories``) and ``DIR/annotations/captions_{split}.json`` (COCO captions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from findvl.jsonio import load_json


@dataclass(frozen=True)
class EngineSegment:
    """One panoptic segment: ``id`` is the entity id the captions cite; ``bbox`` is x,y,w,h."""

    id: int
    category: str
    bbox: tuple[float, float, float, float]
    iscrowd: bool = False


@dataclass(frozen=True)
class EngineImage:
    """One image with what the prompt shows about it."""

    image_id: int
    file_name: str
    width: int
    height: int
    captions: tuple[str, ...]
    segments: tuple[EngineSegment, ...]
    pseudo_captions: tuple[str, ...] = ()


def _load_json(path: Path) -> dict:
    data = load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a JSON object")
    return data


def _records(data: dict, key: str, path: Path) -> list[dict]:
    records = data.get(key)
    if not isinstance(records, list):
        raise ValueError(f"{path}: field {key!r} must be a list")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {key}[{index}] must be an object")
    return records


def _get(record: dict, name: str, kind: type | tuple[type, ...], where: str) -> object:
    value = record.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field {name!r} is missing or not {kind}: {value!r}")
    return value


def load_captions(path: Path) -> dict[int, list[str]]:
    """Read a COCO captions file into ``{image_id: [caption, ...]}`` (file order)."""
    captions: dict[int, list[str]] = {}
    for index, ann in enumerate(_records(_load_json(path), "annotations", path)):
        where = f"{path}: annotations[{index}]"
        image_id = _get(ann, "image_id", int, where)
        captions.setdefault(image_id, []).append(str(_get(ann, "caption", str, where)))
    return captions


def _segment(info: dict, names: dict[int, str], where: str) -> EngineSegment:
    category_id = _get(info, "category_id", int, where)
    if category_id not in names:
        raise ValueError(f"{where}: field 'category_id' {category_id} is not in categories")
    bbox = _get(info, "bbox", list, where)
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox) or min(bbox[2:]) < 0:
        raise ValueError(f"{where}: field 'bbox' must be [x, y, w>=0, h>=0], got {bbox!r}")
    return EngineSegment(
        id=_get(info, "id", int, where),
        category=names[category_id],
        bbox=tuple(float(v) for v in bbox),
        iscrowd=bool(info.get("iscrowd", 0)),
    )


def load_engine_images(
    data_dir: Path, split: str, *, pseudo_captions: Path | None = None
) -> list[EngineImage]:
    """Read ``annotations/panoptic_{split}.json`` and ``annotations/captions_{split}.json``.

    Args:
        data_dir: dataset root holding ``annotations/``.
        split: split name, e.g. ``"val2017"``.
        pseudo_captions: optional COCO-captions-format file of detailed (model-written)
            descriptions, shown to the model as noisy context.

    Returns:
        Images sorted by id.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is malformed; the message names the file, record index and field.
    """
    pan_path = Path(data_dir) / "annotations" / f"panoptic_{split}.json"
    panoptic = _load_json(pan_path)
    captions = load_captions(Path(data_dir) / "annotations" / f"captions_{split}.json")
    pseudo = load_captions(Path(pseudo_captions)) if pseudo_captions else {}
    names: dict[int, str] = {}
    for index, cat in enumerate(_records(panoptic, "categories", pan_path)):
        where = f"{pan_path}: categories[{index}]"
        names[_get(cat, "id", int, where)] = str(_get(cat, "name", str, where))
    segments: dict[int, tuple[EngineSegment, ...]] = {}
    for index, ann in enumerate(_records(panoptic, "annotations", pan_path)):
        where = f"{pan_path}: annotations[{index}]"
        infos = _get(ann, "segments_info", list, where)
        segments[_get(ann, "image_id", int, where)] = tuple(
            _segment(info, names, f"{where}.segments_info[{k}]") for k, info in enumerate(infos)
        )
    images = []
    for index, img in enumerate(_records(panoptic, "images", pan_path)):
        where = f"{pan_path}: images[{index}]"
        image_id = _get(img, "id", int, where)
        images.append(
            EngineImage(
                image_id=image_id,
                file_name=str(_get(img, "file_name", str, where)),
                width=_get(img, "width", int, where),
                height=_get(img, "height", int, where),
                captions=tuple(captions.get(image_id, ())),
                segments=segments.get(image_id, ()),
                pseudo_captions=tuple(pseudo.get(image_id, ())),
            )
        )
    return sorted(images, key=lambda im: im.image_id)
