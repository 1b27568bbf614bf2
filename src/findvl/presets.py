"""Model presets: one function per preset returns its whole :class:`ModelConfig`.

Plain data (no torch): the command line lists :data:`PRESETS` in its help without loading the
model code; :func:`findvl.build.build_preset` turns a name into a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from findvl.config import (
    ConventionsConfig,
    InterfaceConfig,
    LanguageConfig,
    ModelConfig,
    PixelDecoderConfig,
    VisionConfig,
)
from findvl.released import RELEASED_PRESETS

#: Prefix of a path naming an encoder shipped inside the package (``findvl/pretrained/NAME``).
SHIPPED = "findvl:"


def find_tiny_config() -> ModelConfig:
    """Fast on CPU: for tests and the quickstart. Encoders are built-in and trainable."""
    return ModelConfig(
        preset="find_tiny",
        vision=VisionConfig(kind="tiny", widths=(32, 48, 64, 96)),
        language=LanguageConfig(kind="tiny", dim=64, num_layers=1, max_length=77),
        pixel_decoder=PixelDecoderConfig(
            conv_dim=64, mask_dim=64, num_encoder_layers=1, num_heads=4, ffn_dim=128
        ),
        interface=InterfaceConfig(
            hidden_dim=64,
            num_layers=3,
            num_heads=4,
            ffn_dim=128,
            num_proposals=16,
            spatial_memories=8,
            dim_proj=64,
            max_spatial_points=64,
            pixel_scores="cosine",
        ),
    )


def find_sam_llama_config() -> ModelConfig:
    """SAM (ViT-B) vision + a LLaMA-family language model (paper Table 5), FIND-T interface.

    Set ``vision.path`` and ``language.path`` to local Hugging Face directories.
    """
    return ModelConfig(
        preset="find_sam_llama",
        vision=VisionConfig(kind="hf", longest_side=1024, pyramid_channels=256),
        language=LanguageConfig(kind="hf", layer=-12),
        pixel_decoder=PixelDecoderConfig(trainable=True),
        interface=InterfaceConfig(),
    )


def find_dinov2_clip_config() -> ModelConfig:
    """DINOv2 vision + CLIP text tower, FIND-T interface (paths via ``vision.path`` and
    ``language.path``)."""
    return ModelConfig(
        preset="find_dinov2_clip",
        vision=VisionConfig(kind="hf", longest_side=518, pyramid_channels=256),
        language=LanguageConfig(kind="hf", layer=None),  # CLIP text: last hidden state
        pixel_decoder=PixelDecoderConfig(trainable=True),
        interface=InterfaceConfig(),
    )


def find_synth_vit_config() -> ModelConfig:
    """find_tiny's interface over the project's own *pretrained, frozen* CLIP-style ViT (patch 4
    at 64 px: a stride-4 grid) and its text tower (``pretrained/synth-clip-*``). Only the
    pyramid, pixel decoder, interface and ``lang_proj`` train.

    Sized for 64-pixel images: the pyramid is one octave finer than usual (the interface
    attends 4x4, 8x8 and 16x16 cells, not 2x2..8x8, so a proposal pools the patch features of
    its own object), masks come at stride 1 through the pixel-detail path, and the temperature
    starts at CLIP's 1/0.07 (at the official e^1 no class reaches the 0.8 object threshold).
    The ViT tells colours and backgrounds apart but hardly shapes (per-cell shape accuracy
    22%), so its class embeddings of the 8 shapes merge (``benchmarks/class_table.py``)."""
    return ModelConfig(
        preset="find_synth_vit",
        vision=VisionConfig(
            kind="hf",
            path=f"{SHIPPED}synth-clip-vision",
            longest_side=64,
            pyramid_channels=64,
            grid_stride=4,
            finest_stride=2,
        ),
        language=LanguageConfig(
            kind="hf",
            path=f"{SHIPPED}synth-clip-text",
            layer=None,
            cache_entries=65536,
            logit_scale_init=math.log(1 / 0.07),
            whiten=True,
        ),
        pixel_decoder=replace(find_tiny_config().pixel_decoder, mask_stride=1),
        interface=find_tiny_config().interface,
    )


def find_synth_config() -> ModelConfig:
    """The quickstart's model: find_tiny's interface over the project's own *pretrained, frozen*
    foundation models (``findvl pretrain-encoders --vision resnet`` on the synthetic train split,
    shipped as Hugging Face directories in ``pretrained/resnet/``). Only the pixel decoder,
    interface and ``lang_proj`` train.

    The image tower is a ResNet of basic blocks that reads the 64 px images resized to 128 (as
    FIND resizes its inputs); its four stages (strides 4..32) are FIND's levels, as FIND reads
    the stages of its FocalNet, at 2..16 of the original pixels, so the interface attends
    4x4, 8x8 and 16x16 cells. It tells the shapes apart (per-cell shape accuracy 70-79% from
    the original stride 4 on, against the ViT's 22%). Masks at stride 2 of the resized input
    (the original resolution), the temperature starts at CLIP's 1/0.07, and class embeddings
    are the projected names (``conventions.class_table="text"``, X-Decoder's): the interface's
    class pass starts every shape name at one embedding (cosine 0.998 at initialisation,
    ``python benchmarks/class_table.py --preset find_synth_vit``)."""
    vit = find_synth_vit_config()
    return ModelConfig(
        preset="find_synth",
        vision=VisionConfig(kind="hf", path=f"{SHIPPED}resnet/synth-clip-vision", longest_side=128),
        language=replace(vit.language, path=f"{SHIPPED}resnet/synth-clip-text"),
        pixel_decoder=replace(find_tiny_config().pixel_decoder, mask_stride=2),
        interface=find_tiny_config().interface,
        # a prompt's mask is chosen by score + 30 x click agreement at inference (the quickstart
        # run: interactive mIoU@1 / @5 62.6 / 59.0 -> 71.0 / 71.9; pretrained/README.md)
        conventions=ConventionsConfig(class_table="text", click_agreement=30.0),
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "find_tiny": find_tiny_config,
    "find_synth": find_synth_config,
    "find_synth_vit": find_synth_vit_config,
    **RELEASED_PRESETS,
    "find_sam_llama": find_sam_llama_config,
    "find_dinov2_clip": find_dinov2_clip_config,
}


def preset_config(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
