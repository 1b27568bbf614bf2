"""Frozen hierarchical Hugging Face backbones (RegNet, ResNet, ConvNeXt) as ``VisionEncoder``s.

A hierarchical network already gives maps at several strides, as FIND's own FocalNet and
DaViT do, so there is no extra pyramid: the last four maps of distinct strides in the
backbone's ``hidden_states`` become ``res2..res5`` with the backbone's own widths, and the
pixel decoder's input projections read them as they read the official backbones' levels.

* RegNet (``RegNetModel``): the stem (stride 2) and the stages (4, 8, 16, 32 ...). With three
  stages the levels are the stem and the stages: strides 2/4/8/16, what 64 px images need.
* ResNet (``ResNetModel``): the four stages (4, 8, 16, 32; the stem's stride-4 map is the
  first stage's input, so the stage wins). On 64 px images resized to 128: 2/4/8/16 of the
  original pixels.
* ConvNeXt (``ConvNextModel``): the stages, at ``patch_size * 2**i``.

The strides are measured once with a probe forward, not assumed. The backbone is frozen: no
gradients, always in eval mode (batch norms keep their running statistics).
"""

from __future__ import annotations

import torch
from torch import nn

from findvl.encoders.preprocess import ImageNorm
from findvl.encoders.vision import FeatureLevel, VisionEncoder

LEVEL_NAMES = ("res2", "res3", "res4", "res5")
PROBE_SIDE = 256


def probe_levels(backbone: nn.Module) -> tuple[list[int], tuple[FeatureLevel, ...]]:
    """The ``hidden_states`` indices of the last four distinct strides and their levels."""
    with torch.no_grad():
        dtype = next(backbone.parameters()).dtype
        probe = torch.zeros(1, backbone.config.num_channels, PROBE_SIDE, PROBE_SIDE, dtype=dtype)
        states = backbone(pixel_values=probe, output_hidden_states=True).hidden_states
    chosen: dict[int, tuple[int, int]] = {}  # stride -> (index, channels); later maps win
    for index, state in enumerate(states):
        chosen[PROBE_SIDE // state.shape[-1]] = (index, state.shape[1])
    strides = sorted(chosen)[-4:]
    if len(strides) < 4:
        raise ValueError(f"the backbone gives {len(strides)} distinct strides, FIND needs 4")
    indices = [chosen[s][0] for s in strides]
    levels = tuple(
        FeatureLevel(name, stride, chosen[stride][1]) for name, stride in zip(LEVEL_NAMES, strides)
    )
    return indices, levels


class HierarchicalAdapter(VisionEncoder):
    """A frozen multi-stage backbone whose own maps are ``res2..res5``.

    Args:
        backbone: a ``RegNetModel`` or ``ConvNextModel`` (anything whose forward takes
            ``pixel_values`` and returns ``hidden_states`` maps ``[B,C,h,w]``).
        norm: the pixel preprocessing the backbone expects.
        model_type: the ``model_type`` of the checkpoint, for reports.
    """

    def __init__(self, *, backbone: nn.Module, norm: ImageNorm, model_type: str) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.indices, self.levels = probe_levels(self.backbone)
        self.norm = norm
        self.model_type = model_type

    def train(self, mode: bool = True) -> HierarchicalAdapter:
        """The frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,H,W]`` (H, W multiples of 32) -> ``{res2..res5: [B,C_i,H/s_i,W/s_i]}``."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B,3,H,W], got {tuple(pixels.shape)}")
        dtype = next(self.backbone.parameters()).dtype
        with torch.no_grad():
            states = self.backbone(
                pixel_values=pixels.to(dtype), output_hidden_states=True
            ).hidden_states
        return {level.name: states[i].float() for level, i in zip(self.levels, self.indices)}
