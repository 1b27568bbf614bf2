"""Simple feature pyramid (ViTDet): one single-scale map -> four levels at strides 4/8/16/32."""

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
    coarser levels instead of being upsampled. All parameters are new, hence trainable.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every output level.
        in_stride: stride of the input map in pixels (4, 8 or 16).
    """

    def __init__(self, *, in_channels: int, out_channels: int = 256, in_stride: int = 16) -> None:
        super().__init__()
        if in_stride not in (4, 8, 16):
            raise ValueError(f"in_stride={in_stride}: expected 4, 8 or 16")
        c = in_channels
        self.in_stride = in_stride
        ups = {4: 0, 8: 1, 16: 2}[in_stride]  # upsampling steps to reach stride 4
        self.scale4 = (
            nn.Sequential(
                nn.ConvTranspose2d(c, c // 2, 2, stride=2),
                group_norm(c // 2),
                nn.GELU(),
                nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2),
            )
            if ups == 2
            else nn.ConvTranspose2d(c, c // 2, 2, stride=2)
            if ups == 1
            else nn.Identity()
        )
        self.scale8 = (
            nn.ConvTranspose2d(c, c // 2, 2, stride=2)
            if ups == 2
            else nn.Identity()
            if ups == 1
            else nn.MaxPool2d(2, stride=2)
        )
        self.scale16 = nn.Identity() if ups == 2 else nn.MaxPool2d(16 // in_stride, 16 // in_stride)
        self.scale32 = nn.MaxPool2d(32 // in_stride, stride=32 // in_stride)
        channels = {2: (c // 4, c // 2, c, c), 1: (c // 2, c, c, c), 0: (c, c, c, c)}[ups]
        self.outputs = nn.ModuleList([_output_convs(cin, out_channels) for cin in channels])
        self.levels = tuple(
            FeatureLevel(name, stride, out_channels)
            for name, stride in zip(LEVEL_NAMES, (4, 8, 16, 32))
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,C,h,w]`` at ``in_stride`` -> four maps at strides 4, 8, 16, 32.

        Returns:
            ``{res2: [B,O,H/4,W/4], res3: [B,O,H/8,W/8], res4: [B,O,H/16,W/16],
            res5: [B,O,H/32,W/32]}`` for an ``H x W`` image, with ``O = out_channels``.
        """
        scaled = (self.scale4(x), self.scale8(x), self.scale16(x), self.scale32(x))
        return {level.name: conv(y) for level, conv, y in zip(self.levels, self.outputs, scaled)}
