"""Readers shared by the metric modules: JSON, PNG and COCO RLE, with errors that name the input.

Every reader raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` whose
message starts with the file name and the location of the bad value, e.g.
``pred.json: [3]: missing field 'segmentation'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

Rle = dict[str, Any]


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing file or a syntax error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name}: not valid JSON ({error})") from None


def expect_type(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """Return ``value`` if it is a ``kind`` (bool never counts as a number), else raise."""
    is_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    if is_bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{where}: expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def field(record: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``record[name]`` checked to be a ``kind``; ``where`` locates the record (``file: [i]``)."""
    expect_type(record, dict, where)
    if name not in record:
        raise ValueError(f"{where}: missing field {name!r}")
    return expect_type(record[name], kind, f"{where}: field {name!r}")


def json_list(data: Any, where: str, key: str | None = None) -> list[Any]:
    """The list ``data`` (or ``data[key]``), with an error naming ``where`` otherwise."""
    if key is not None:
        return field(data, key, list, where)
    return expect_type(data, list, where)


def rle_from_json(value: Any, where: str) -> Rle:
    """A COCO RLE (``{"size": [h, w], "counts": str | list[int]}``) in pycocotools' form.

    Uncompressed (list) counts are converted to the compressed form.
    """
    expect_type(value, dict, where)
    size = field(value, "size", list, where)
    if len(size) != 2 or not all(isinstance(v, int) and v >= 0 for v in size):
        raise ValueError(f"{where}: field 'size': expected [height, width], got {size!r:.60}")
    counts = field(value, "counts", (str, list), where)
    height, width = size
    if isinstance(counts, list):
        if sum(counts) != height * width or any(not isinstance(c, int) or c < 0 for c in counts):
            raise ValueError(f"{where}: field 'counts': run lengths do not cover {height}x{width}")
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    rle = {"size": [height, width], "counts": counts.encode("ascii")}
    try:
        area = int(mask_utils.area(rle))
    except Exception as error:  # pycocotools raises bare Exceptions on corrupt strings
        raise ValueError(f"{where}: field 'counts': not a valid RLE string ({error})") from None
    if area > height * width:
        raise ValueError(f"{where}: field 'counts': not a valid RLE string for {height}x{width}")
    return rle


def rle_to_json(mask: np.ndarray) -> Rle:
    """``[H,W]`` boolean mask -> JSON-ready compressed RLE (``counts`` as a string)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def read_png(path: Path, modes: tuple[str, ...]) -> np.ndarray:
    """Pixels of a PNG whose PIL mode is one of ``modes``: ``[H,W]`` or ``[H,W,3]`` array."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            if image.mode not in modes:
                raise ValueError(f"{path.name}: PNG mode {image.mode!r}, expected one of {modes}")
            return np.asarray(image)
    except OSError as error:
        raise ValueError(f"{path.name}: cannot read image ({error})") from None


def percent(value: float | None) -> float | None:
    """A fraction in [0, 1] as a percentage, keeping ``None`` (undefined)."""
    return None if value is None else 100.0 * float(value)
