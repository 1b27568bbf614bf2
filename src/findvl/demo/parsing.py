"""Text fields of the demo page -> typed values; bad input raises :class:`DemoInputError`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from findvl.images import ImageError, read_image


class DemoInputError(ValueError):
    """Input from the page that cannot be used; its message is shown in the page."""


def require_image(image, field: str = "image") -> np.ndarray:
    """An uploaded image (a file path from the page, or an array) -> ``HxWx3`` uint8.

    Files are decoded by :func:`findvl.images.read_image` (EXIF orientation, 16-bit and float
    scaling, the pixel limit); anything unreadable is a :class:`DemoInputError`.
    """
    if image is None or (isinstance(image, str) and not image):
        raise DemoInputError(f"{field}: upload an image first")
    if isinstance(image, (str, Path)):
        try:
            return read_image(image)
        except (ImageError, FileNotFoundError) as error:
            message = str(error).replace(str(image), Path(image).name)
            raise DemoInputError(f"{field}: {message}") from None
    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.size == 0:
        raise DemoInputError(f"{field}: not an image (array of shape {array.shape})")
    return array


def split_list(text: str | None, field: str) -> list[str]:
    """One entry per line; a single line is split at commas. Blank entries are dropped."""
    text = (text or "").strip()
    parts = text.splitlines() if "\n" in text else text.split(",")
    items = [p.strip() for p in parts if p.strip()]
    if not items:
        raise DemoInputError(f"{field}: give at least one entry (one per line or comma-separated)")
    return items


def split_phrases(text: str | None, field: str = "phrases") -> list[str]:
    """Phrases one per line, or a paragraph: then one phrase per sentence."""
    text = (text or "").strip()
    if "\n" not in text and re.search(r"[.!?]\s", text):
        sentences = [s.strip(" .!?") for s in re.split(r"(?<=[.!?])\s+", text)]
        items = [s for s in sentences if s]
        if items:
            return items
    return split_list(text, field)


def parse_numbers(text: str, count: int, field: str) -> tuple[float, ...]:
    values = [v for v in re.split(r"[\s,]+", text.strip()) if v]
    try:
        numbers = tuple(float(v) for v in values)
    except ValueError:
        raise DemoInputError(f"{field}: expected {count} numbers, got {text!r}") from None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        raise DemoInputError(f"{field}: expected {count} numbers, got {text!r}")
    return numbers


def parse_box(text: str | None, field: str = "box") -> tuple[float, float, float, float] | None:
    """``"x0, y0, x1, y1"`` in pixels, or None when blank."""
    if not (text or "").strip():
        return None
    x0, y0, x1, y1 = parse_numbers(text, 4, field)
    if not (x1 > x0 and y1 > y0):
        raise DemoInputError(f"{field}: expected x0 < x1 and y0 < y1, got {text!r}")
    return x0, y0, x1, y1


def parse_points(text: str | None, field: str = "points") -> list[tuple[float, float, int]]:
    """``"x,y[,label]; ..."`` (label 1 positive, 0 negative; default 1) -> ``[(x, y, label)]``."""
    points = []
    for entry in re.split(r"[;\n]", text or ""):
        if not entry.strip():
            continue
        values = [v for v in re.split(r"[\s,]+", entry.strip()) if v]
        if len(values) == 2:
            values.append("1")
        x, y, label = parse_numbers(" ".join(values), 3, f"{field} entry {entry.strip()!r}")
        if label not in (0, 1):
            raise DemoInputError(f"{field}: label must be 1 or 0 in {entry.strip()!r}")
        points.append((x, y, int(label)))
    return points


def format_points(points: list[tuple[float, float, int]]) -> str:
    return "; ".join(f"{int(x)},{int(y)},{label}" for x, y, label in points)


def editor_strokes(value, size: tuple[int, int], field: str = "scribble") -> np.ndarray | None:
    """Strokes drawn in an image editor (its layers' opaque pixels) -> ``[H,W]`` bool or None.

    ``value``: the editor's value (a dict with ``layers``), an ``HxWx4`` array (alpha marks
    the strokes) or an ``HxW`` array (non-zero marks them).
    """
    if value is None:
        return None
    layers = value.get("layers") if isinstance(value, dict) else [value]
    mask = np.zeros(size, bool)
    for layer in layers or []:
        if layer is None:
            continue
        array = np.asarray(layer)
        drawn = array[..., 3] > 0 if array.ndim == 3 and array.shape[2] == 4 else array != 0
        if drawn.ndim == 3:
            drawn = drawn.any(-1)
        if drawn.shape != tuple(size):
            raise DemoInputError(
                f"{field}: drawn on a {drawn.shape[1]}x{drawn.shape[0]} canvas, the image is "
                f"{size[1]}x{size[0]}"
            )
        mask |= drawn
    return mask if mask.any() else None
