"""Simple feature pyramid (ViTDet): one single-scale map -> four levels (strides 4/8/16/32)."""

from __future__ import annotations

import math

import torch
from torch import nn

from findvl.encoders.vision import FeatureLevel

LEVEL_NAMES = ("res2", "res3", "res4", "res5")


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with up to ``max_groups`` groups of at least two channels each.

    The group count is ``gcd(max_groups, channels // 2)``: 32 groups for 256 channels.
    """
    return nn.GroupNorm(math.gcd(max_groups, max(1, channels // 2)), channels)


def _output_convs(cin: int, cout: int) -> nn.Sequential:
    # 1x1 conv + GN, then 3x3 conv + GN (ViTDet's lateral and output convs)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, bias=False),
        group_norm(cout),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        group_norm(cout),
    )


class SimpleFeaturePyramid(nn.Module):
    """Turn a single feature map into ``res2..res5`` (ViTDet's simple pyramid).

    For the usual stride-16 input (ViT-B/16, SAM, DINOv2 at patch 14 resampled):

    * stride 4: two 2x2 stride-2 transposed convs (GN + GELU between them);
    * stride 8: one 2x2 stride-2 transposed conv;
    * stride 16: identity;
    * stride 32: 2x2 max pooling;

    each followed by a 1x1 conv + GroupNorm and a 3x3 conv + GroupNorm to ``out_channels``.
    A finer input (``in_stride`` 4 or 8, small models on small images) is max-pooled to the
    coarser levels instead of being upsampled. ``finest_stride=2`` makes every level one
    octave finer (strides 2/4/8/16): on a 64-pixel image the interface then attends 4x4, 8x8
    and 16x16 cells instead of 2x2, 4x4 and 8x8. All parameters are new, hence trainable.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every output level.
        in_stride: stride of the input map in pixels (4, 8 or 16).
        finest_stride: stride of ``res2`` (4, the usual layout, or 2).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int = 256,
        in_stride: int = 16,
        finest_stride: int = 4,
    ) -> None:
        super().__init__()
        if in_stride not in (4, 8, 16):
            raise ValueError(f"in_stride={in_stride}: expected 4, 8 or 16")
        if finest_stride not in (2, 4) or in_stride // finest_stride > 4:
            raise ValueError(
                f"finest_stride={finest_stride}: expected 4 or 2, at most 4x finer than the "
                f"input (in_stride={in_stride})"
            )
        c = in_channels
        self.in_stride = in_stride
        strides = tuple(finest_stride * 2**i for i in range(4))
        scales, channels = zip(*(_resample(c, s / in_stride) for s in strides))
        self.scale4, self.scale8, self.scale16, self.scale32 = scales
        self.outputs = nn.ModuleList([_output_convs(cin, out_channels) for cin in channels])
        self.levels = tuple(
            FeatureLevel(name, stride, out_channels) for name, stride in zip(LEVEL_NAMES, strides)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,C,h,w]`` at ``in_stride`` -> four maps at the level strides ``s_i``.

        Returns:
            ``{res2: [B,O,H/s_0,W/s_0], ..., res5: [B,O,H/s_3,W/s_3]}`` for an ``H x W``
            image (``s = 4, 8, 16, 32`` by default), with ``O = out_channels``.
        """
        scaled = (self.scale4(x), self.scale8(x), self.scale16(x), self.scale32(x))
        return {level.name: conv(y) for level, conv, y in zip(self.levels, self.outputs, scaled)}


def _resample(c: int, ratio: float) -> tuple[nn.Module, int]:
    """The resampling of a ``c``-channel map by ``ratio`` (output/input stride), and the
    channels it gives: transposed convs to upsample (halving channels), max pooling down."""
    if ratio == 0.25:
        up = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, stride=2),
            group_norm(c // 2),
            nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2),
        )
        return up, c // 4
    if ratio == 0.5:
        return nn.ConvTranspose2d(c, c // 2, 2, stride=2), c // 2
    if ratio == 1:
        return nn.Identity(), c
    k = int(ratio)
    return nn.MaxPool2d(k, stride=k), c
