"""Prediction heads: semantic projection, pixel projection and masks.

``x = decoder_norm(output)``; the image query is re-computed as attention pooling of the object
proposals; ``semantic = x @ class_embed``; ``pixel = mask_embed(x)``; ``masks = pixel ·
mask_features``. Attention masks for the next layer are made at attention resolution from
pre-interpolated mask features (bilinear interpolation is linear, so this equals interpolating
the full-resolution masks); full-resolution masks only where asked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from findvl.encoders.pixel_decoder import PixelFeatures
from findvl.layers import MLP
from findvl.model.sequence_types import MaskFeatures, SlotInput, SlotPrediction
from findvl.prototypes import IMAGE_QUERY, OBJECT_PROPOSALS


class FindHeads(nn.Module):
    """The semantic and pixel projections.

    Args:
        hidden_dim: interface width D.
        dim_proj: semantic space size P.
        mask_dim: pixel space size M (channels of ``mask_features``).
        pool_image_query: re-compute the image query as attention pooling of the object
            proposals (FIND's); False: the image query's own output.
    """

    def __init__(
        self, *, hidden_dim: int, dim_proj: int, mask_dim: int, pool_image_query: bool = True
    ) -> None:
        super().__init__()
        self.pool_image_query = pool_image_query
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Parameter(torch.empty(hidden_dim, dim_proj))
        nn.init.trunc_normal_(self.class_embed, std=0.02)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @staticmethod
    def prepare(pixel: PixelFeatures | None) -> MaskFeatures | None:
        if pixel is None:
            return None
        # Finer-than-stride-4 features are averaged down (antialiased) rather than sampled:
        # still linear, so it equals resizing the full-resolution masks the same way.
        antialias = pixel.mask_stride < 4
        levels = [
            F.interpolate(
                pixel.mask_features,
                size=lv.shape[-2:],
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            if antialias
            else bilinear_downsample(pixel.mask_features, tuple(lv.shape[-2:]))
            for lv in pixel.levels
        ]
        return MaskFeatures(pixel.mask_features, levels)

    def forward(
        self,
        xs: list[torch.Tensor],
        slots: list[SlotInput],
        mask_features: MaskFeatures | None,
        *,
        level: int,
        full_masks: bool = True,
    ) -> dict[str, SlotPrediction]:
        """``xs[k] [B,n_k,D]`` for each output slot -> ``{key: SlotPrediction}``."""
        normed = {s.key: self.decoder_norm(x) for s, x in zip(slots, xs)}
        if self.pool_image_query and OBJECT_PROPOSALS in normed and IMAGE_QUERY in normed:
            normed[IMAGE_QUERY] = pool_image_query(normed[IMAGE_QUERY], normed[OBJECT_PROPOSALS])
        out = {}
        for s in slots:
            x = normed[s.key]
            pixel = self.mask_embed(x)
            pred = SlotPrediction(semantic=x @ self.class_embed, pixel=pixel)
            if s.kind == "proposal" and mask_features is not None:
                pred.attn = torch.einsum("bqc,bchw->bqhw", pixel, mask_features.levels[level])
                if full_masks:
                    pred.masks = torch.einsum("bqc,bchw->bqhw", pixel, mask_features.full)
            out[s.key] = pred
        return out


def bilinear_downsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` of ``[B,C,H,W]``.

    Where a side shrinks by an integer factor ``s``, output cell ``i`` samples the input at
    ``s·i + (s-1)/2``: one input cell for odd ``s``, the mean of two neighbours for even ``s``,
    so the result is a strided slice (and a mean), the same values up to float rounding. On the
    CPU ``interpolate`` runs a slow general kernel at factors above 2 and a fast one at 2
    (``benchmarks/inference.py`` times both ways): factors up to 2 and sizes that do not divide
    go to ``interpolate``.
    """
    (h, w), (oh, ow) = x.shape[-2:], size
    if oh < 1 or ow < 1 or h % oh or w % ow or max(h // oh, w // ow) <= 2:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return _strided_mean(_strided_mean(x, -2, h // oh), -1, w // ow)


def _strided_mean(x: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Cells ``factor·i + (factor-1)/2`` along ``dim``: one cell (odd) or the mean of two."""

    def every(start: int) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        index[dim] = slice(start, None, factor)
        return x[tuple(index)]

    if factor % 2:
        return every(factor // 2)
    return (every(factor // 2 - 1) + every(factor // 2)) * 0.5


def pool_image_query(image: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """Attention pooling: ``image [B,1,D]`` re-computed from ``objects [B,N,D]`` -> ``[B,1,D]``.

    Weights are ``softmax(cos(image, object))`` over the objects (no gradient through them).
    """
    q = F.normalize(image, dim=-1, eps=1e-7)
    k = F.normalize(objects, dim=-1, eps=1e-7)
    weights = (q @ k.transpose(1, 2)).softmax(-1).detach()  # Bx1xN
    return weights @ objects
