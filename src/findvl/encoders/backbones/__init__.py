"""The vision backbones of the released FIND configs, in plain PyTorch.

API (all a converter or preset needs):

* ``BACKBONES[name]()`` builds the backbone ``name`` at its released size, randomly initialised.
  Names: ``focalt`` (Focal-T, ``focal_dw``), ``focall`` (Focal-L, ``focal``), ``davitd3``,
  ``davitd5``, ``samb`` (SAM ViT-B + FIND's simple FPN).
* ``CONFIG_BACKBONE[config]`` is the backbone name of each official ``configs/find/<config>.yaml``.
* Every backbone's ``state_dict()`` keys are the official checkpoint's ``backbone.*`` keys with
  the ``backbone.`` prefix stripped, and every tensor has the checkpoint's shape, so
  ``backbone.load_state_dict({k[len("backbone."):]: v for k, v in ckpt.items()
  if k.startswith("backbone.")})`` loads it strictly.
* ``backbone(pixels)`` maps ``[B,3,H,W]`` normalised pixels (ImageNet mean/std on the 0..255
  scale; H, W multiples of ``backbone.size_divisibility``) to ``{res2..res5: [B,C,H/s,W/s]}``,
  described by ``backbone.out_strides`` and ``backbone.out_channels`` (``{level: int}``).
  ``samb`` only takes ``backbone.input_size`` (1024) square images, as the official module.

:class:`findvl.encoders.official_vision.OfficialVisionEncoder` puts one behind findvl's vision
encoder contract.
"""

from __future__ import annotations

from collections.abc import Callable

from findvl.encoders.backbones.common import LEVEL_NAMES, MultiScaleBackbone
from findvl.encoders.backbones.davit import DaViT, davit_d3, davit_d5
from findvl.encoders.backbones.focalnet import FocalNet, focal_large, focal_tiny_dw
from findvl.encoders.backbones.sam_vit import SamViT, sam_vit_b

BACKBONES: dict[str, Callable[[], MultiScaleBackbone]] = {
    "focalt": focal_tiny_dw,
    "focall": focal_large,
    "davitd3": davit_d3,
    "davitd5": davit_d5,
    "samb": sam_vit_b,
}

CONFIG_BACKBONE: dict[str, str] = {
    "focalt_llama_lang": "focalt",
    "focalt_unicl_lang": "focalt",
    "focall_llama_lang": "focall",
    "focall_unicl_lang": "focall",
    "davitd3_llama_lang": "davitd3",
    "davitd3_unicl_lang": "davitd3",
    "davitd5_llama_lang": "davitd5",
    "davitd5_unicl_lang": "davitd5",
    "samb_llama_lang": "samb",
    "samb_unicl_lang": "samb",
}


def build_backbone(name: str) -> MultiScaleBackbone:
    """``BACKBONES[name]()`` with a clear error for an unknown name."""
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r}: expected one of {sorted(BACKBONES)}")
    return BACKBONES[name]()


__all__ = [
    "BACKBONES",
    "CONFIG_BACKBONE",
    "LEVEL_NAMES",
    "DaViT",
    "FocalNet",
    "MultiScaleBackbone",
    "SamViT",
    "build_backbone",
]
