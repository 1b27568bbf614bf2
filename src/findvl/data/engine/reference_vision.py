"""Segment embedders over a vision encoder, for :mod:`findvl.data.engine.references`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from findvl.encoders.preprocess import preprocess_images
from findvl.encoders.vision import TinyBackbone, VisionEncoder


class VisionSegmentEmbedder:
    """Mean-pools one feature level of a :class:`VisionEncoder` under each mask.

    Masks are area-downsampled to the feature grid (a weighted average); a mask too small to
    leave any weight falls back to its max-pooled footprint.

    Args:
        encoder: the vision encoder (used in eval mode, without gradients).
        level: which output level to pool, e.g. "res3".
    """

    def __init__(self, *, encoder: VisionEncoder, level: str = "res3") -> None:
        names = [lv.name for lv in encoder.levels]
        if level not in names:
            raise ValueError(f"level: {level!r} is not one of the encoder's levels {names}")
        self.encoder = encoder.eval()
        self.level = level

    @torch.no_grad()
    def __call__(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``(image uint8 [H,W,3], masks bool [N,H,W]) -> [N,C]`` float32."""
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # HxWx3 -> 3xHxW
        batch = preprocess_images([pixels], self.encoder.norm)
        features = self.encoder.forward_features(batch.pixels)[self.level][0]  # Cxhxw
        (vh, vw), (ph, pw) = batch.sizes[0], batch.pixels.shape[-2:]
        m = torch.from_numpy(np.ascontiguousarray(masks))[:, None].float()
        m = F.interpolate(m, size=(vh, vw), mode="nearest")
        m = F.pad(m, (0, pw - vw, 0, ph - vh))  # Nx1xHxW, padded like the pixels
        grid = features.shape[-2:]
        weights = F.interpolate(m, size=grid, mode="area").flatten(1)  # Nxhw
        empty = weights.sum(1) <= 0
        if empty.any():
            weights[empty] = F.adaptive_max_pool2d(m[empty], grid).flatten(1)
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        return (weights @ features.flatten(1).T).float().numpy()  # Nxhw @ hwxC -> NxC


def tiny_vision_embedder(seed: int = 0) -> VisionSegmentEmbedder:
    """A :class:`VisionSegmentEmbedder` over a randomly initialised, seeded ``TinyBackbone``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TinyBackbone()
    return VisionSegmentEmbedder(encoder=encoder, level="res3")
