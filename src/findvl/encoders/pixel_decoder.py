"""Pixel decoder: transformer encoder on the coarsest level + FPN (the released FIND's design).

``res5 -> 1x1 conv -> N-layer transformer encoder (sine PE, post-norm) -> 3x3 conv+GN+ReLU``,
then top-down: ``lateral 1x1 conv+GN`` + nearest upsample + ``3x3 conv+GN+ReLU`` for res4, res3,
res2. Outputs three levels at the hidden size (strides 32, 16, 8) and ``mask_features`` at
stride 4. Parameter names follow the released checkpoints (``adapter_i``, ``layer_i``,
``input_proj``, ``transformer.encoder.layers.i``, ``mask_features``).

Optionally (``mask_stride`` 2 or 1, not in the released models) a *detail* path makes the mask
features finer than the encoder's finest level: a small conv stem on the normalised pixels at
that stride, concatenated with the upsampled stride-4 map, then ``mask_features`` (a 1x1 conv).
A stride-4 grid cannot draw a 10-pixel object: on the 64-pixel synthetic world even perfect
stride-4 logits reach only 0.62 mean IoU on things (``benchmarks/mask_ceiling.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from findvl.encoders.vision import FeatureLevel
from findvl.layers import MultiheadAttention, PositionEmbeddingSine


class ConvNorm(nn.Conv2d):
    """A conv whose GroupNorm lives at ``.norm`` (so names read ``layer_1.norm.weight``)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, norm: bool, relu: bool) -> None:
        super().__init__(cin, cout, kernel, padding=kernel // 2, bias=not norm)
        self.norm = nn.GroupNorm(32 if cout % 32 == 0 else 8, cout) if norm else None
        self.relu = relu
        nn.init.kaiming_uniform_(self.weight, a=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class EncoderLayer(nn.Module):
    """DETR encoder layer, post-norm: attention + FFN with residuals."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        qk = x + pos
        x = self.norm1(x + self.self_attn(qk, qk, x, allowed))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        allowed = valid[:, None, :].expand(-1, x.shape[1], -1)
        for layer in self.layers:
            x = layer(x, pos, allowed)
        return x


class _EncoderHolder(nn.Module):
    def __init__(self, encoder: TransformerEncoder) -> None:
        super().__init__()
        self.encoder = encoder


@dataclass
class PixelFeatures:
    """Output of the pixel decoder.

    Attributes:
        levels: three ``[B,C,h_i,w_i]`` maps at strides 32, 16, 8 (16, 8, 4 with
            ``attend_finest``), coarse to fine.
        valid: per level ``[B,h_i,w_i]`` bool, True inside each image's valid region.
        mask_features: ``[B,mask_dim,H/s,W/s]`` (``s`` = ``mask_stride``, 4 in the released
            models).
        mask_valid: ``[B,H/s,W/s]`` bool.
        mask_stride: ``s``.
    """

    levels: list[torch.Tensor]
    valid: list[torch.Tensor]
    mask_features: torch.Tensor
    mask_valid: torch.Tensor
    mask_stride: int = 4


def downsample_valid(valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B,H,W]`` bool -> ``[B,h,w]``: a cell is valid if any pixel it covers is.

    Where ``h`` and ``w`` divide the canvas (every level of a canvas padded to the coarsest
    stride) this is a reshape and a max over each cell, which ``torch.export`` keeps symbolic in
    the canvas size; elsewhere adaptive max pooling (the same result where both apply)."""
    b, height, width = valid.shape
    h, w = size
    if height % h == 0 and width % w == 0:
        cells = valid.reshape(b, h, height // h, w, width // w)  # Bxhx(H/h)xwx(W/w)
        return cells.amax(dim=(2, 4))
    return F.adaptive_max_pool2d(valid[:, None].float(), size)[:, 0] > 0


class PixelDecoder(nn.Module):
    """FPN + transformer-encoder pixel decoder.

    Args:
        in_levels: the vision encoder's levels res2..res5 (finest first).
        conv_dim: width of every level (the interface's hidden size).
        mask_dim: channels of ``mask_features``.
        num_encoder_layers: transformer layers on the coarsest level.
        num_heads: heads of those layers.
        ffn_dim: their FFN width.
        mask_stride: stride of ``mask_features``; None: the finest level's (the released
            design); a finer one (1 or 2) adds the pixel-detail path.
        detail_dim: channels of the detail stem.
        bottom_up: add a bottom-up path after the top-down one (PANet): each level but the
            finest adds a stride-2 ``3x3 conv+GN+ReLU`` of the next finer output, finest first,
            so the three attended levels also carry the stride-4 map's (res2's) detail.
        attend_finest: the levels given to the interface are the three finest outputs
            (strides 16, 8, 4; the stride-4 map also makes the mask features) instead of the
            three coarsest (32, 16, 8).
    """

    def __init__(
        self,
        *,
        in_levels: tuple[FeatureLevel, ...],
        conv_dim: int,
        mask_dim: int,
        num_encoder_layers: int,
        num_heads: int,
        ffn_dim: int,
        mask_stride: int | None = None,
        detail_dim: int = 32,
        bottom_up: bool = False,
        attend_finest: bool = False,
    ) -> None:
        super().__init__()
        if len(in_levels) != 4:
            raise ValueError(f"pixel decoder needs 4 input levels (res2..res5), got {in_levels}")
        finest = in_levels[0].stride
        mask_stride = finest if mask_stride is None else mask_stride
        if mask_stride not in (1, 2, 4) or mask_stride > finest:
            raise ValueError(
                f"mask_stride must be 1, 2 or 4 and at most the finest level's stride "
                f"({finest}), got {mask_stride}"
            )
        self.in_levels = in_levels
        self.input_proj = nn.Conv2d(in_levels[-1].channels, conv_dim, 1)
        self.transformer = _EncoderHolder(
            TransformerEncoder(conv_dim, num_heads, ffn_dim, num_encoder_layers)
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)
        for i, level in enumerate(in_levels[:-1]):
            self.add_module(
                f"adapter_{i + 1}", ConvNorm(level.channels, conv_dim, 1, norm=True, relu=False)
            )
            self.add_module(f"layer_{i + 1}", ConvNorm(conv_dim, conv_dim, 3, norm=True, relu=True))
        self.add_module(
            f"layer_{len(in_levels)}", ConvNorm(conv_dim, conv_dim, 3, norm=True, relu=True)
        )
        self.bottom_up = nn.ModuleList(
            _StridedConvNorm(conv_dim) for _ in range(len(in_levels) - 1) if bottom_up
        )
        self.attended = slice(1, 4) if attend_finest else slice(0, 3)
        self.mask_stride = mask_stride
        self.detailed = mask_stride < finest
        if not self.detailed:
            self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        else:
            self.detail = DetailStem(detail_dim, stride=mask_stride)
            self.mask_features = nn.Conv2d(conv_dim + detail_dim, mask_dim, 1)
        self.conv_dim, self.mask_dim = conv_dim, mask_dim

    def forward(
        self,
        features: dict[str, torch.Tensor],
        valid: torch.Tensor,
        pixels: torch.Tensor | None = None,
    ) -> PixelFeatures:
        """``features`` res2..res5, ``valid [B,H,W]`` (input-pixel validity) and, for the
        detail path, the normalised ``pixels [B,3,H,W]`` -> levels."""
        names = [lv.name for lv in self.in_levels]
        x5 = features[names[-1]]
        b, _, h, w = x5.shape
        v5 = downsample_valid(valid, (h, w))
        pos = self.pe_layer(v5).flatten(2).transpose(1, 2)  # BxCxhxw -> Bx(hw)xC
        y = self.input_proj(x5).flatten(2).transpose(1, 2)
        y = self.transformer.encoder(y, pos, v5.flatten(1))
        y = y.transpose(1, 2).reshape(b, self.conv_dim, h, w)
        y = getattr(self, f"layer_{len(names)}")(y)
        outs, valids = [y], [v5]
        for i in range(len(names) - 2, -1, -1):
            lateral = getattr(self, f"adapter_{i + 1}")(features[names[i]])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{i + 1}")(y)
            outs.append(y)
            valids.append(downsample_valid(valid, tuple(y.shape[-2:])))
        for k, down in enumerate(self.bottom_up):  # outs: strides 32, 16, 8, 4
            j = len(outs) - 2 - k  # the stride-8 level first
            outs[j] = outs[j] + down(outs[j + 1], size=outs[j].shape[-2:])
        if not self.detailed:
            mask_features = self.mask_features(outs[-1])
            return PixelFeatures(
                outs[self.attended], valids[self.attended], mask_features, valids[-1],
                self.mask_stride,
            )  # fmt: skip
        if pixels is None:
            raise ValueError(f"mask_stride={self.mask_stride} needs the pixels")
        detail = self.detail(pixels)
        coarse = F.interpolate(
            outs[-1], size=detail.shape[-2:], mode="bilinear", align_corners=False
        )
        return PixelFeatures(
            levels=outs[self.attended],
            valid=valids[self.attended],
            mask_features=self.mask_features(torch.cat([coarse, detail], 1)),
            mask_valid=downsample_valid(valid, tuple(detail.shape[-2:])),
            mask_stride=self.mask_stride,
        )


class _StridedConvNorm(nn.Module):
    """``[B,C,h,w]`` -> ``[B,C,size]``: a stride-2 ``3x3 conv+GN+ReLU`` (one bottom-up step)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2, padding=1, bias=False)
        self.norm = nn.GroupNorm(32 if dim % 32 == 0 else 8, dim)
        nn.init.kaiming_uniform_(self.conv.weight, a=1)

    def forward(self, x: torch.Tensor, *, size: tuple[int, int]) -> torch.Tensor:
        y = F.relu(self.norm(self.conv(x)))
        if tuple(y.shape[-2:]) != tuple(size):  # an odd-sized finer map
            y = F.interpolate(y, size=size, mode="nearest")
        return y


class DetailStem(nn.Sequential):
    """``[B,3,H,W]`` normalised pixels -> ``[B,dim,H/stride,W/stride]``: two 3x3 conv+GN+ReLU."""

    def __init__(self, dim: int, *, stride: int) -> None:
        first = nn.Conv2d(3, dim, 3, stride=stride, padding=1, bias=False)
        nn.init.kaiming_uniform_(first.weight, a=1)
        super().__init__(
            first,
            nn.GroupNorm(8, dim),
            nn.ReLU(),
            ConvNorm(dim, dim, 3, norm=True, relu=True),
        )
