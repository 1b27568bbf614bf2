"""Click simulator for interactive segmentation evaluation.

The next click goes to the point farthest from the border (distance-transform maximum) of the
error region with the larger such distance: false negatives give a positive click, false
positives a negative one. The first click (no prediction yet) is the maximum on the GT mask.
Ties go to the first pixel in row-major order, so clicks are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Click:
    """A click at pixel ``(y, x)``; ``positive`` means "this is part of the object"."""

    y: int
    x: int
    positive: bool


def _distance(region: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel outside ``region``; the image border counts as outside."""
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def next_click(gt: np.ndarray, pred: np.ndarray | None = None) -> Click | None:
    """The next corrective click.

    Args:
        gt: ``[H,W]`` bool ground-truth mask.
        pred: ``[H,W]`` bool current prediction, or None before the first click.

    Returns:
        the click, or None when ``pred`` equals ``gt`` (nothing to correct).
    """
    gt = np.asarray(gt, dtype=bool)
    if gt.ndim != 2:
        raise ValueError(f"gt: expected a [H,W] mask, got shape {gt.shape}")
    if pred is None:
        pred = np.zeros_like(gt)
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred: shape {pred.shape} differs from gt {gt.shape}")
    fn = _distance(gt & ~pred)
    fp = _distance(pred & ~gt)
    if fn.max() == 0 and fp.max() == 0:
        return None
    positive = bool(fn.max() >= fp.max())
    dist = fn if positive else fp
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(int(y), int(x), positive)


def clicks_to_masks(
    clicks: list[Click], shape: tuple[int, int], *, radius: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise clicks as disks of ``radius`` pixels.

    Returns:
        ``(positive, negative)``, each a ``[H,W]`` bool mask.
    """
    positive = np.zeros(shape, dtype=bool)
    negative = np.zeros(shape, dtype=bool)
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    for click in clicks:
        if not (0 <= click.y < shape[0] and 0 <= click.x < shape[1]):
            raise ValueError(f"click {click}: outside the image of shape {shape}")
        disk = (yy - click.y) ** 2 + (xx - click.x) ** 2 <= radius**2
        (positive if click.positive else negative)[disk] = True
    return positive, negative
