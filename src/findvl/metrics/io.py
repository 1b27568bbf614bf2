"""Readers shared by the metric modules: JSON fields, PNG and COCO RLE; errors name the input.

Every reader raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` whose
message starts with the file name and the location of the bad value, e.g.
``pred.json: [3]: missing field 'segmentation'``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from findvl.images import max_pixels_setting

Rle = dict[str, Any]


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
        bad = any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in counts)
        if bad or sum(counts) != height * width:
            raise ValueError(f"{where}: field 'counts': run lengths do not cover {height}x{width}")
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    total = _string_counts_total(counts, where)
    if total != height * width:
        raise ValueError(
            f"{where}: field 'counts': run lengths sum to {total}, expected {height}x{width} = "
            f"{height * width}"
        )
    return {"size": [height, width], "counts": counts.encode("ascii")}


def _string_counts_total(counts: str, where: str) -> int:
    """Sum of the run lengths of a compressed COCO RLE string, checking every run.

    The string holds 5-bit groups offset by 48 (bit 5: more groups follow; bit 4 of a number's
    last group: negative), runs after the third stored as differences to the run two before.
    pycocotools decodes without checks and can loop forever on a string whose runs overrun
    the mask, so the string is checked here first (vectorised: COCO files hold many masks).
    """
    try:
        codes = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise ValueError(f"{where}: field 'counts': not an RLE string (non-ASCII)") from None
    if codes.size == 0:
        return 0
    if ((codes < 0) | (codes >= 64)).any():
        bad = chr(int(codes[(codes < 0) | (codes >= 64)][0]) + 48)
        raise ValueError(f"{where}: field 'counts': {bad!r} is not an RLE character")
    ends = (codes & 0x20) == 0  # the last group of each number
    if not ends[-1]:
        raise ValueError(f"{where}: field 'counts': the RLE string ends inside a number")
    starts = np.flatnonzero(np.concatenate([[True], ends[:-1]]))
    number = np.cumsum(np.concatenate([[0], ends[:-1]]))
    k = np.arange(codes.size) - starts[number]  # group index within its number
    if k.max() > 7:
        raise ValueError(f"{where}: field 'counts': a run longer than 2**40 pixels")
    values = np.add.reduceat((codes & 0x1F) << (5 * k), starts)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (k[ends][negative] + 1))
    values[1::2] = np.cumsum(values[1::2])  # run m > 2 adds run m - 2
    values[2::2] = np.cumsum(values[2::2])
    if (values < 0).any():
        raise ValueError(f"{where}: field 'counts': negative run length {int(values.min())}")
    return int(values.sum())


def check_rle_size(rle: Rle, height: int, width: int, where: str) -> None:
    """``ValueError`` unless ``rle`` covers an image of ``height`` x ``width``."""
    if list(rle["size"]) != [height, width]:
        raise ValueError(
            f"{where}: field 'size': {list(rle['size'])} does not match the image's "
            f"[height, width] {[height, width]}"
        )


def finite_number(value: Any, where: str) -> float:
    """A JSON number that is finite (NaN and infinity are refused)."""
    expect_type(value, (int, float), where)
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def xywh_box(value: Any, where: str) -> list[float]:
    """``[x, y, w, h]`` of finite numbers with ``w, h >= 0``."""
    expect_type(value, list, where)
    if len(value) != 4:
        raise ValueError(f"{where}: expected [x, y, w, h], got {value!r:.60}")
    box = [finite_number(v, where) for v in value]
    if box[2] < 0 or box[3] < 0:
        raise ValueError(f"{where}: width and height must be >= 0, got {value!r:.60}")
    return box


def rle_to_json(mask: np.ndarray) -> Rle:
    """``[H,W]`` boolean mask -> JSON-ready compressed RLE (``counts`` as a string)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def read_png(path: Path, modes: tuple[str, ...]) -> np.ndarray:
    """Pixels of a PNG whose PIL mode is one of ``modes``: ``[H,W]`` or ``[H,W,3]`` array."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    limit = max_pixels_setting()
    try:
        with Image.open(path) as image:
            if image.mode not in modes:
                raise ValueError(f"{path.name}: PNG mode {image.mode!r}, expected one of {modes}")
            if image.width * image.height > limit:
                raise ValueError(
                    f"{path}: {image.width}x{image.height} pixels is above the limit of "
                    f"{limit} (raise it with --max-pixels)"
                )
            return np.asarray(image)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, EOFError) as error:
        raise ValueError(f"{path.name}: cannot read image ({error})") from None


def percent(value: float | None) -> float | None:
    """A fraction in [0, 1] as a percentage, keeping ``None`` (undefined)."""
    return None if value is None else 100.0 * float(value)
