"""Rasterised visual prompts sampled from an object mask: point, box, scribble, polygon, circle,
mask — positive (on the object) or negative (off it).

Every prompt is a ``[H,W]`` bool mask. Positive prompts lie inside the object, except ``box``,
which is the *filled* bounding box of the object (it contains the object). Negative prompts are
drawn the same way on a blob of the complement (background or other objects) and never touch the
object. The default mix is the official training one: point / polygon / scribble / circle, 0.25
each.
"""

from __future__ import annotations

from math import comb

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

PROMPT_KINDS = ("point", "box", "scribble", "polygon", "circle", "mask")
OFFICIAL_KINDS = ("point", "polygon", "scribble", "circle")
OFFICIAL_PROBS = (0.25, 0.25, 0.25, 0.25)


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"mask: expected a [H,W] bool array, got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise ValueError("mask: the object is empty")
    return mask


def _interior_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel of ``mask`` drawn with probability ~ distance-to-border squared (interior first)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    weights = dist.ravel() ** 2
    index = int(rng.choice(weights.size, p=weights / weights.sum()))
    return divmod(index, mask.shape[1])


def _canvas(mask: np.ndarray) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    return canvas, ImageDraw.Draw(canvas)


def _disk(shape: tuple[int, int], y: float, x: float, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius**2


def _default_radius(mask: np.ndarray) -> float:
    return max(2.0, 0.012 * max(mask.shape))


def point_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small disk (radius ~1% of the image) around an interior point, clipped to the object."""
    y, x = _interior_point(mask, rng)
    return _disk(mask.shape, y, x, _default_radius(mask)) & mask


def box_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The filled bounding box of the object (``rng`` unused; kept for a uniform signature)."""
    del rng
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    out = np.zeros_like(mask)
    out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return out


def _bezier(points: np.ndarray, steps: int = 64) -> np.ndarray:
    """``[K,2]`` control points -> ``[steps,2]`` points of their Bezier curve."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    k = len(points) - 1
    basis = np.concatenate([comb(k, i) * t**i * (1 - t) ** (k - i) for i in range(k + 1)], 1)
    return basis @ points


def scribble_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth random stroke through 2-4 interior points, clipped to the object."""
    count = int(rng.integers(2, 5))
    points = np.array([_interior_point(mask, rng) for _ in range(count)], dtype=np.float64)
    curve = _bezier(points[:, ::-1])  # (y, x) -> (x, y) for PIL
    canvas, draw = _canvas(mask)
    width = max(1, round(_default_radius(mask)))
    draw.line([tuple(p) for p in curve], fill=255, width=width, joint="curve")
    out = (np.asarray(canvas) > 0) & mask
    return out if out.any() else point_prompt(mask, rng)


def polygon_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random star-shaped polygon with vertices inside the object's box, clipped to the object
    (falls back to a point when the clipped polygon is empty)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    for _ in range(10):
        n = int(rng.integers(3, 9))
        ys = rng.uniform(rows[0], rows[-1] + 1, size=n)
        xs = rng.uniform(cols[0], cols[-1] + 1, size=n)
        order = np.argsort(np.arctan2(ys - ys.mean(), xs - xs.mean()))
        canvas, draw = _canvas(mask)
        draw.polygon([(float(xs[i]), float(ys[i])) for i in order], fill=255)
        out = (np.asarray(canvas) > 0) & mask
        if out.any():
            return out
    return point_prompt(mask, rng)


def circle_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A filled disk around an interior point, radius 10-50% of the object's equivalent radius,
    clipped to the object."""
    y, x = _interior_point(mask, rng)
    radius = rng.uniform(0.1, 0.5) * np.sqrt(mask.sum() / np.pi)
    return _disk(mask.shape, y, x, max(radius, 1.0)) & mask


def mask_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object mask, eroded 0-2 times (not eroded away)."""
    iterations = int(rng.integers(0, 3))
    eroded = ndimage.binary_erosion(mask, iterations=iterations) if iterations else mask.copy()
    return eroded if eroded.any() else mask.copy()


_SAMPLERS = {
    "point": point_prompt,
    "box": box_prompt,
    "scribble": scribble_prompt,
    "polygon": polygon_prompt,
    "circle": circle_prompt,
    "mask": mask_prompt,
}


def _negative_region(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A blob of the complement of ``mask``: a disk around an off-object point, minus the object."""
    outside = ~mask
    if not outside.any():
        raise ValueError("mask: covers the whole image, no room for a negative prompt")
    y, x = _interior_point(outside, rng)
    radius = max(4.0, 0.15 * max(mask.shape))
    return _disk(mask.shape, y, x, radius) & outside


def sample_prompt(
    mask: np.ndarray, kind: str, rng: np.random.Generator, *, negative: bool = False
) -> np.ndarray:
    """One rasterised prompt of ``kind`` for the object ``mask``.

    Args:
        mask: ``[H,W]`` bool object mask (non-empty).
        kind: one of ``PROMPT_KINDS``.
        rng: the only source of randomness.
        negative: draw the prompt off the object instead of on it.

    Returns:
        ``[H,W]`` bool prompt mask (non-empty).
    """
    mask = _check_mask(mask)
    if kind not in _SAMPLERS:
        raise ValueError(f"kind: expected one of {PROMPT_KINDS}, got {kind!r}")
    if negative:
        return _SAMPLERS[kind](_negative_region(mask, rng), rng) & ~mask
    return _SAMPLERS[kind](mask, rng)


def sample_random_prompt(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    kinds: tuple[str, ...] = OFFICIAL_KINDS,
    probs: tuple[float, ...] | None = OFFICIAL_PROBS,
    negative: bool = False,
) -> tuple[str, np.ndarray]:
    """A prompt of a random kind (``probs`` None: uniform). Returns ``(kind, [H,W] bool)``."""
    if probs is not None and (len(probs) != len(kinds) or not np.isclose(sum(probs), 1.0)):
        raise ValueError(f"probs: expected {len(kinds)} probabilities summing to 1, got {probs}")
    kind = kinds[int(rng.choice(len(kinds), p=probs))]
    return kind, sample_prompt(mask, kind, rng, negative=negative)
