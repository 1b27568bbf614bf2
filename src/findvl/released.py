"""Presets of the released FIND architectures (the ten ``configs/find/*.yaml`` of the official
repository): backbone x text tower, the FIND-T interface, the released conventions.

=====================  ==========================  =========================================
preset                 official config             parts
=====================  ==========================  =========================================
``find_focalt``        ``focalt_llama_lang``       Focal-T (``focal_dw``) + LLaMA (layer -12)
``find_focalt_unicl``  ``focalt_unicl_lang``       Focal-T + UniCL text tower
``find_focall``        ``focall_llama_lang``       Focal-L (``focal``) + LLaMA
``find_focall_unicl``  ``focall_unicl_lang``       Focal-L + UniCL
``find_davitd3``       ``davitd3_llama_lang``      DaViT-d3 + LLaMA
``find_davitd3_unicl`` ``davitd3_unicl_lang``      DaViT-d3 + UniCL
``find_davitd5``       ``davitd5_llama_lang``      DaViT-d5 + LLaMA
``find_davitd5_unicl`` ``davitd5_unicl_lang``      DaViT-d5 + UniCL
``find_samb``          ``samb_llama_lang``         SAM ViT-B + simple FPN (1024²) + LLaMA
``find_samb_unicl``    ``samb_unicl_lang``         SAM ViT-B + UniCL
=====================  ==========================  =========================================

Every part is frozen except ``lang_proj`` and ``logit_scale`` (released training) and the
interface. Weights come from ``findvl convert``; ``language.path`` is the LLaMA directory
(LLaMA presets) or the CLIP tokenizer directory (UniCL presets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from findvl.config import (
    OFFICIAL_CONVENTIONS,
    InterfaceConfig,
    LanguageConfig,
    ModelConfig,
    PixelDecoderConfig,
    VisionConfig,
)

BACKBONE_NAMES = ("focalt", "focall", "davitd3", "davitd5", "samb")
TEXT_TOWERS = ("llama", "unicl")


def released_config(backbone: str, text: str) -> ModelConfig:
    """The released architecture ``backbone`` x ``text`` (``llama`` or ``unicl``)."""
    if backbone not in BACKBONE_NAMES:
        raise ValueError(f"backbone {backbone!r}: expected one of {BACKBONE_NAMES}")
    if text == "llama":
        # LLaMA-7B read at hidden_states[-12] (output of layer 21), right padding, pad = EOS,
        # BOS kept; 4096-wide features, lang_proj [4096, 512]. Set dtype "fp16" on GPU.
        language = LanguageConfig(
            kind="hf", layer=-12, max_length=77, dim=4096, trainable=False, proj_init_std=0.02
        )
    elif text == "unicl":
        # 12-layer, 512-wide causal CLIP-style tower, 77 tokens, lang_proj [512, 512].
        language = LanguageConfig(
            kind="unicl",
            dim=512,
            num_layers=12,
            num_heads=8,
            max_length=77,
            vocab_size=49408,
            trainable=False,
            proj_init_std=0.02,
        )
    else:
        raise ValueError(f"text tower {text!r}: expected one of {TEXT_TOWERS}")
    name = f"find_{backbone}" + ("" if text == "llama" else "_unicl")
    return ModelConfig(
        preset=name,
        vision=VisionConfig(
            kind="official",
            backbone=backbone,
            trainable=False,
            longest_side=1024 if backbone == "samb" else None,
        ),
        language=language,
        pixel_decoder=PixelDecoderConfig(trainable=False),
        interface=InterfaceConfig(),
        conventions=dataclasses.replace(OFFICIAL_CONVENTIONS),
    )


def _preset(backbone: str, text: str) -> Callable[[], ModelConfig]:
    def build() -> ModelConfig:
        return released_config(backbone, text)

    build.__doc__ = f"Released FIND: {backbone} backbone, {text} text tower."
    return build


#: Official config name (``configs/find/<name>.yaml``) -> preset name.
OFFICIAL_CONFIGS: dict[str, str] = {
    f"{b}_{t}_lang": f"find_{b}" + ("" if t == "llama" else "_unicl")
    for b in BACKBONE_NAMES
    for t in TEXT_TOWERS
}

#: Preset name -> config builder, for :data:`findvl.build.PRESETS`.
RELEASED_PRESETS: dict[str, Callable[[], ModelConfig]] = {
    OFFICIAL_CONFIGS[f"{b}_{t}_lang"]: _preset(b, t) for b in BACKBONE_NAMES for t in TEXT_TOWERS
}
