"""COCO panoptic PNG colours <-> segment ids (``id = R + 256 G + 256² B``)."""

from __future__ import annotations

import numpy as np


def rgb2id(color: np.ndarray) -> np.ndarray:
    """``[H,W,3]`` uint8 panoptic colours -> ``[H,W]`` int64 segment ids."""
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb2id`: ``[H,W]`` segment ids (< 256³) -> ``[H,W,3]`` uint8."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
