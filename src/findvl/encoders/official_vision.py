"""The official FIND backbones (FocalNet, DaViT, SAM ViT-B + FPN) behind the vision contract.

:class:`OfficialVisionEncoder` holds the backbone as ``self.backbone``, so its parameters are
named ``backbone.<official name>`` — exactly the released checkpoints' ``backbone.*`` keys.
Its levels are the backbone's own (``res2..res5`` at strides 4/8/16/32, the official channel
widths); there is no extra pyramid. Preprocessing is the official one: ImageNet mean/std on the
0..255 scale, padding to the official ``SIZE_DIVISIBILITY`` (32; 1024 for SAM).

A SAM backbone only takes ``1024 x 1024`` pixels; a smaller batch (H, W multiples of 32) is
zero-padded at the bottom/right to that size and the outputs are cropped back to
``ceil(H/s) x ceil(W/s)``. With the default preprocessing every batch is already 1024², as in
the official pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from findvl.encoders.backbones import MultiScaleBackbone, build_backbone
from findvl.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageNorm
from findvl.encoders.vision import FeatureLevel, VisionEncoder


class OfficialVisionEncoder(VisionEncoder):
    """A :mod:`findvl.encoders.backbones` backbone as a :class:`VisionEncoder`.

    Args:
        backbone: the backbone module (e.g. ``BACKBONES["focalt"]()``).
        name: its ``BACKBONES`` name, reported as ``model_type``.
        trainable: ``False`` (FIND's setting) freezes it: no gradients, always in eval mode.
        longest_side: resize target of the preprocessing (None keeps the image size).
    """

    def __init__(
        self,
        *,
        backbone: MultiScaleBackbone,
        name: str,
        trainable: bool = False,
        longest_side: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.trainable = trainable
        self.model_type = name
        self.levels = tuple(
            FeatureLevel(level, backbone.out_strides[level], backbone.out_channels[level])
            for level in backbone.out_strides
        )
        self.norm = ImageNorm(
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            longest_side=longest_side,
            pad_multiple=backbone.size_divisibility,
        )
        if not trainable:
            self.backbone.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> OfficialVisionEncoder:
        """Set the mode; a frozen backbone always stays in eval mode."""
        super().train(mode)
        if not self.trainable:
            self.backbone.eval()
        return self

    def forward_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,H,W]`` normalised pixels (H, W multiples of 32) -> ``{res2..res5:
        [B,C_l,H/s_l,W/s_l]}`` with the backbone's channels ``C_l`` and strides ``s_l``."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B,3,H,W], got {tuple(pixels.shape)}")
        h, w = pixels.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"pixels: height and width must be multiples of 32, got {h}x{w}")
        side = self.backbone.input_size
        if side is not None:
            if h > side or w > side:
                raise ValueError(
                    f"pixels: {h}x{w} is larger than the {self.model_type} backbone's "
                    f"{side}x{side} input (resize the longer side to {side})"
                )
            pixels = F.pad(pixels, (0, side - w, 0, side - h))
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.backbone(pixels.to(next(self.backbone.parameters()).dtype))
        if side is not None:
            out = {
                level: feature[..., : -(-h // stride), : -(-w // stride)]
                for (level, feature), stride in zip(out.items(), self.backbone.out_strides.values())
            }
        return {level: feature.float() for level, feature in out.items()}


def build_official_vision(
    name: str, *, trainable: bool = False, longest_side: int | None = None
) -> OfficialVisionEncoder:
    """Build the released-size backbone ``name`` (see ``BACKBONES``) behind the contract.

    The weights are random; load a converted checkpoint's ``backbone.*`` tensors into it.
    """
    return OfficialVisionEncoder(
        backbone=build_backbone(name), name=name, trainable=trainable, longest_side=longest_side
    )
