"""Simple feature pyramid (ViTDet): one stride-16 map -> four levels at strides 4/8/16/32."""

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
    """Turn a single stride-16 feature map into ``res2..res5`` (ViTDet's simple pyramid).

    * stride 4: two 2x2 stride-2 transposed convs (GN + GELU between them);
    * stride 8: one 2x2 stride-2 transposed conv;
    * stride 16: identity;
    * stride 32: 2x2 max pooling;

    each followed by a 1x1 conv + GroupNorm and a 3x3 conv + GroupNorm to ``out_channels``.
    All parameters are new, hence trainable.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every output level.
    """

    def __init__(self, *, in_channels: int, out_channels: int = 256) -> None:
        super().__init__()
        c = in_channels
        self.scale4 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, stride=2),
            group_norm(c // 2),
            nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2),
        )
        self.scale8 = nn.ConvTranspose2d(c, c // 2, 2, stride=2)
        self.scale16 = nn.Identity()
        self.scale32 = nn.MaxPool2d(2, stride=2)
        self.outputs = nn.ModuleList(
            [_output_convs(cin, out_channels) for cin in (c // 4, c // 2, c, c)]
        )
        self.levels = tuple(
            FeatureLevel(name, stride, out_channels)
            for name, stride in zip(LEVEL_NAMES, (4, 8, 16, 32))
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,C,h,w]`` at stride 16 (h, w even) -> four maps at strides 4, 8, 16, 32.

        Returns:
            ``{res2: [B,O,4h,4w], res3: [B,O,2h,2w], res4: [B,O,h,w], res5: [B,O,h/2,w/2]}``
            with ``O = out_channels``.
        """
        scaled = (self.scale4(x), self.scale8(x), self.scale16(x), self.scale32(x))
        return {level.name: conv(y) for level, conv, y in zip(self.levels, self.outputs, scaled)}
