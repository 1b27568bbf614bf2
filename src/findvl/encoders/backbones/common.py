"""Pieces shared by the official FIND backbones: the output description and window helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVEL_NAMES = ("res2", "res3", "res4", "res5")


class MultiScaleBackbone(nn.Module):
    """Base of every official backbone: ``forward(pixels) -> {res2..res5: [B,C,H/s,W/s]}``.

    Attributes:
        out_strides: ``{level: stride in input pixels}``, finest first.
        out_channels: ``{level: channels}``.
        size_divisibility: the official pipeline pads its batch to a multiple of this.
        input_size: ``None`` for any size, else the one square side the backbone accepts.
    """

    out_strides: dict[str, int]
    out_channels: dict[str, int]
    size_divisibility: int = 32
    input_size: int | None = None

    def _describe(self, strides: list[int], channels: list[int]) -> None:
        self.out_strides = dict(zip(LEVEL_NAMES, strides))
        self.out_channels = dict(zip(LEVEL_NAMES, channels))

    def check_pixels(self, pixels: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``pixels`` is ``[B,3,H,W]`` of an accepted size."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B,3,H,W], got {tuple(pixels.shape)}")
        side = self.input_size
        if side is not None and tuple(pixels.shape[-2:]) != (side, side):
            raise ValueError(
                f"pixels: this backbone takes {side}x{side} images, got "
                f"{pixels.shape[-2]}x{pixels.shape[-1]}"
            )


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[B,H,W,C]`` -> ``[B*nW, window, window, C]`` after zero-padding bottom/right.

    Returns the windows and the padded size ``(Hp, Wp)``.
    """
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c), (hp, wp)


def window_merge(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B*nW, window, window, C]`` -> ``[B,H,W,C]``."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, hp, wp, -1)
    return x[:, :h, :w].contiguous() if (hp, wp) != (h, w) else x
