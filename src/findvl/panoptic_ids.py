"""COCO panoptic conventions shared by the readers and the metrics: the category record and
PNG colours <-> segment ids (``id = R + 256 G + 256² B``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Category:
    """A panoptic category: COCO ``id``, ``name`` and whether it is a thing (else stuff)."""

    id: int
    name: str
    isthing: bool


def rgb2id(color: np.ndarray) -> np.ndarray:
    """``[H,W,3]`` uint8 panoptic colours -> ``[H,W]`` int64 segment ids."""
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb2id`: ``[H,W]`` segment ids (< 256³) -> ``[H,W,3]`` uint8."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
