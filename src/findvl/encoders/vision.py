"""Vision encoders: one contract, ``forward_features(pixels) -> {level: [B,C,H,W]}``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from findvl.encoders.preprocess import ImageNorm


@dataclass(frozen=True)
class FeatureLevel:
    """One output level of a vision encoder: ``name`` at ``stride`` with ``channels``."""

    name: str
    stride: int
    channels: int


class VisionEncoder(nn.Module):
    """Base class of every vision encoder.

    Subclasses set ``levels`` (finest first, named ``res2..res5`` at strides 4/8/16/32) and
    ``norm`` (their preprocessing) and implement :meth:`forward_features`.
    """

    levels: tuple[FeatureLevel, ...]
    norm: ImageNorm
    model_type: str = "vision"

    def forward_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,H,W]`` normalised pixels (H, W multiples of 32) -> ``{name: [B,C,H/s,W/s]}``."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(pixels)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(VisionEncoder):
    """A small convolutional backbone for tests and the quickstart (not pretrained).

    Args:
        widths: channels of res2..res5.
    """

    model_type = "tiny"

    def __init__(self, *, widths: tuple[int, int, int, int] = (32, 48, 64, 96)) -> None:
        super().__init__()
        self.norm = ImageNorm()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.GroupNorm(8, widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.ModuleList()
        cin = widths[0]
        for i, cout in enumerate(widths):
            self.stages.append(_conv_block(cin, cout, stride=2))
            cin = cout
            del i
        self.levels = tuple(
            FeatureLevel(f"res{i + 2}", 2 ** (i + 2), c) for i, c in enumerate(widths)
        )

    def forward_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(pixels)  # Bx3xHxW -> BxC0xH/2xW/2
        out = {}
        for level, stage in zip(self.levels, self.stages):
            x = stage(x)
            out[level.name] = x
        return out
