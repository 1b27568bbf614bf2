"""Frozen Hugging Face vision transformers (SAM, DINOv2, CLIP) as ``VisionEncoder``s.

Every adapter turns the padded ``[B,3,H,W]`` batch (H, W multiples of 32) into one feature grid
at **stride 16** of that batch, ``[B,C,H/16,W/16]``, and a trainable
:class:`~findvl.encoders.pyramid.SimpleFeaturePyramid` makes ``res2..res5`` (strides 4/8/16/32).

How the patch grid maps back to stride 16:

* patch size 16 (SAM-B/L/H, CLIP ViT-B/16): the pixels are used as they are.
* any other patch size ``p`` (DINOv2 and CLIP ViT-L/14: 14; ViT-B/32: 32): the padded batch is
  resampled (bilinear) to ``(H/16*p, W/16*p)``, so the model sees exactly ``H/16 x W/16``
  patches and patch ``(i, j)`` covers the input pixels ``[16i, 16i+16) x [16j, 16j+16)``.
* SAM only accepts its native square input (``image_size``, 1024): the batch is zero-padded at the
  bottom/right to ``image_size x image_size`` (after normalisation zero is the mean colour, as in
  SAM's own preprocessing) and the neck output is cropped back to ``H/16 x W/16``. A batch larger
  than ``image_size`` is first downscaled to fit and the grid is resampled back to ``H/16 x W/16``.

The backbone is frozen: its parameters have ``requires_grad=False``, it runs under
``torch.no_grad()``, and :meth:`FrozenViTEncoder.train` puts it back in eval mode whenever the
parent module is put in train mode (``model.train()`` reaches it through ``Module.train``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from findvl.encoders.preprocess import ImageNorm
from findvl.encoders.pyramid import SimpleFeaturePyramid
from findvl.encoders.vision import VisionEncoder

GRID_STRIDE = 16


def resample_to_patch_grid(
    pixels: torch.Tensor, patch_size: int, stride: int = GRID_STRIDE
) -> torch.Tensor:
    """``[B,3,H,W]`` -> ``[B,3,H/s*p,W/s*p]`` so a ``p``-pixel patch covers ``s`` input pixels."""
    h, w = pixels.shape[-2:]
    size = (h // stride * patch_size, w // stride * patch_size)
    if size == (h, w):
        return pixels
    downscale = patch_size < stride
    return F.interpolate(
        pixels, size=size, mode="bilinear", align_corners=False, antialias=downscale
    )


def tokens_to_grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B,N,C]`` patch tokens (the last ``height*width`` of N, row-major) -> ``[B,C,h,w]``."""
    patches = tokens[:, tokens.shape[1] - height * width :]  # drop CLS / register tokens
    return patches.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)  # BxHWxC -> BxCxHxW


class FrozenViTEncoder(VisionEncoder):
    """A frozen single-scale backbone followed by a trainable simple feature pyramid.

    Subclasses implement :meth:`grid`.

    Args:
        backbone: the Hugging Face vision module (frozen here).
        grid_channels: channels of the grid the backbone produces.
        norm: the pixel preprocessing the backbone expects.
        out_channels: channels of every pyramid level.
        model_type: the ``model_type`` of the checkpoint, for reports.
        grid_stride: input pixels per grid cell (16: ViT-B/16-style; 4 or 8 for small models
            on small images, where a stride-16 grid would leave a few cells per image). The
            image is resampled so one backbone patch covers ``grid_stride`` pixels (SAM: 16).
        finest_stride: stride of the pyramid's ``res2`` (4; 2 makes every level one octave
            finer, for small images).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        grid_channels: int,
        norm: ImageNorm,
        out_channels: int = 256,
        model_type: str,
        grid_stride: int = GRID_STRIDE,
        finest_stride: int = 4,
    ) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.grid_stride = grid_stride
        self.pyramid = SimpleFeaturePyramid(
            in_channels=grid_channels,
            out_channels=out_channels,
            in_stride=grid_stride,
            finest_stride=finest_stride,
        )
        self.levels = self.pyramid.levels
        self.norm = norm
        self.model_type = model_type

    def train(self, mode: bool = True) -> FrozenViTEncoder:
        """Set train/eval mode of the pyramid; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    @property
    def backbone_dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def grid(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` float32 normalised pixels -> ``[B,C,H/s,W/s]`` backbone features
        (``s = grid_stride``).

        Resampling happens in float32; the backbone input is cast to the backbone's dtype.
        """
        raise NotImplementedError

    def forward_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,H,W]`` (H, W multiples of 32) -> ``{res2..res5: [B,out_channels,H/s,W/s]}``."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B,3,H,W], got {tuple(pixels.shape)}")
        h, w = pixels.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"pixels: height and width must be multiples of 32, got {h}x{w}")
        with torch.no_grad():
            grid = self.grid(pixels.float()).float()
        return self.pyramid(grid)


class SamVisionAdapter(FrozenViTEncoder):
    """SAM's image encoder (ViT + neck, ``SamVisionEncoder``); features = the neck output.

    The backbone is a ``transformers`` ``SamVisionEncoder`` (``SamModel.vision_encoder`` or
    ``SamVisionModel.vision_encoder``); its grid has ``config.output_channels`` channels.
    """

    def grid(self, pixels: torch.Tensor) -> torch.Tensor:
        config = self.backbone.config
        size, patch = config.image_size, config.patch_size
        h, w = pixels.shape[-2:]
        scale = min(1.0, size / max(h, w))
        x = pixels
        if scale < 1.0:
            new_size = (max(1, int(h * scale)), max(1, int(w * scale)))
            x = F.interpolate(
                x, size=new_size, mode="bilinear", align_corners=False, antialias=True
            )
        xh, xw = x.shape[-2:]
        x = F.pad(x, (0, size - xw, 0, size - xh))  # zero (= mean colour) at bottom/right
        features = self.backbone(
            pixel_values=x.to(self.backbone_dtype)
        ).last_hidden_state  # Bx256xS/pxS/p
        features = features[:, :, : math.ceil(xh / patch), : math.ceil(xw / patch)]
        target = (h // self.grid_stride, w // self.grid_stride)
        if features.shape[-2:] != target:
            features = F.interpolate(features, size=target, mode="bilinear", align_corners=False)
        return features


class Dinov2Adapter(FrozenViTEncoder):
    """DINOv2 (``Dinov2Model``, with or without registers); features = the final patch tokens.

    ``last_hidden_state`` (after the final layer norm) minus the CLS and register tokens; the
    position embeddings are interpolated to the grid by the model itself.
    """

    def grid(self, pixels: torch.Tensor) -> torch.Tensor:
        s = self.grid_stride
        x = resample_to_patch_grid(pixels, self.backbone.config.patch_size, s)
        tokens = self.backbone(
            pixel_values=x.to(self.backbone_dtype)
        ).last_hidden_state  # Bx(1+R+hw)xC
        h, w = pixels.shape[-2:]
        return tokens_to_grid(tokens, h // s, w // s)


class ClipVisionAdapter(FrozenViTEncoder):
    """CLIP's vision tower (``CLIPVisionModel``); features = the final patch tokens.

    ``last_hidden_state`` (the encoder output; ``post_layernorm`` only feeds the pooled CLS
    embedding) minus the CLS token, with ``interpolate_pos_encoding=True`` for non-native sizes.
    """

    def grid(self, pixels: torch.Tensor) -> torch.Tensor:
        s = self.grid_stride
        x = resample_to_patch_grid(pixels, self.backbone.config.patch_size, s)
        out = self.backbone(pixel_values=x.to(self.backbone_dtype), interpolate_pos_encoding=True)
        tokens = out.last_hidden_state  # Bx(1+hw)xC
        h, w = pixels.shape[-2:]
        return tokens_to_grid(tokens, h // s, w // s)
