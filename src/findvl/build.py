"""Presets and builders: one function per preset writes out the whole module tree."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import replace

import torch

from findvl.config import (
    InterfaceConfig,
    LanguageConfig,
    ModelConfig,
    PixelDecoderConfig,
    VisionConfig,
)
from findvl.encoders.language import LanguageEncoder, TinyLanguageEncoder
from findvl.encoders.pixel_decoder import PixelDecoder
from findvl.encoders.vision import TinyBackbone, VisionEncoder
from findvl.model.find import FindModel
from findvl.model.heads import FindHeads
from findvl.model.interface import FindInterface
from findvl.released import RELEASED_PRESETS


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


def find_synth_config() -> ModelConfig:
    """The quickstart's model: find_tiny's interface over the project's own *pretrained, frozen*
    foundation models (``findvl pretrain-encoders`` on the synthetic train split, shipped as
    Hugging Face directories): a CLIP-style ViT (patch 4 at 64 px: a stride-4 grid) and its
    text tower. Only the pyramid, pixel decoder, interface and ``lang_proj`` train.

    Sized for 64-pixel images: the pyramid is one octave finer than usual (the interface
    attends 4x4, 8x8 and 16x16 cells, not 2x2..8x8, so a proposal pools the patch features of
    its own object: at 2x2..8x8 every thing came out as "some shape", class probability
    ~1/8), masks come at stride 1 through the pixel-detail path, and the temperature starts
    at CLIP's 1/0.07 (at the official e^1 no class reaches the 0.8 object threshold)."""
    return ModelConfig(
        preset="find_synth",
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


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "find_tiny": find_tiny_config,
    "find_synth": find_synth_config,
    **RELEASED_PRESETS,
    "find_sam_llama": find_sam_llama_config,
    "find_dinov2_clip": find_dinov2_clip_config,
}


def preset_config(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def build_vision(cfg: VisionConfig) -> VisionEncoder:
    if cfg.kind == "tiny":
        encoder = TinyBackbone(widths=tuple(cfg.widths))
    elif cfg.kind == "hf":
        from findvl.encoders.loading import load_vision_encoder

        encoder = load_vision_encoder(
            _require_path(cfg.path, "vision.path"),
            out_channels=cfg.pyramid_channels,
            longest_side=cfg.longest_side,
            dtype=cfg.dtype,
            grid_stride=cfg.grid_stride,
            finest_stride=cfg.finest_stride,
        )
    elif cfg.kind == "official":
        from findvl.encoders.official_vision import build_official_vision

        if not cfg.backbone:
            raise ValueError("vision.backbone: required when vision.kind is 'official'")
        encoder = build_official_vision(
            cfg.backbone, trainable=cfg.trainable, longest_side=cfg.longest_side
        )
    else:
        raise ValueError(f"vision.kind={cfg.kind!r}: expected 'tiny', 'hf' or 'official'")
    if cfg.longest_side is not None:
        encoder.norm = replace(encoder.norm, longest_side=cfg.longest_side)
    return encoder


def build_language(cfg: LanguageConfig) -> LanguageEncoder:
    if cfg.kind == "tiny":
        encoder = TinyLanguageEncoder(
            dim=cfg.dim, num_layers=cfg.num_layers, max_length=cfg.max_length
        )
        frozen = not cfg.trainable
    elif cfg.kind == "hf":
        from findvl.encoders.loading import load_language_encoder

        encoder = load_language_encoder(
            _require_path(cfg.path, "language.path"),
            layer=cfg.layer,
            dtype=cfg.dtype,
            max_length=cfg.max_length,
        )
        frozen = True
    elif cfg.kind == "unicl":
        from findvl.encoders.unicl_text import UniclTextEncoder, load_clip_tokenizer

        encoder = UniclTextEncoder(
            tokenizer=load_clip_tokenizer(_require_path(cfg.path, "language.path")),
            width=cfg.dim,
            layers=cfg.num_layers,
            heads=cfg.num_heads,
            context_length=cfg.max_length,
            vocab_size=cfg.vocab_size,
        )
        encoder.requires_grad_(False)
        frozen = True
    else:
        raise ValueError(f"language.kind={cfg.kind!r}: expected 'tiny', 'hf' or 'unicl'")
    if cfg.cache_entries > 0 and frozen:
        from findvl.encoders.text_cache import TextFeatureCache

        encoder.requires_grad_(False)
        encoder = TextFeatureCache(encoder, max_entries=cfg.cache_entries, directory=cfg.cache_dir)
    return encoder


#: Prefix of a path naming an encoder shipped inside the package (``findvl/pretrained/NAME``).
SHIPPED = "findvl:"


def shipped_path(name: str) -> str:
    """The directory of a shipped encoder (``findvl:NAME`` in configs)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained", name)


def _require_path(path: str | None, field: str) -> str:
    if not path:
        raise ValueError(f"{field}: a local model directory is required")
    if path.startswith(SHIPPED):
        path = shipped_path(path[len(SHIPPED) :])
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{field}: no directory at {path}")
    return path


def build_model(config: ModelConfig) -> FindModel:
    """Build a :class:`FindModel` from its config and freeze what the config says is frozen."""
    vision = build_vision(config.vision)
    language = build_language(config.language)
    pd, it = config.pixel_decoder, config.interface
    pixel_decoder = PixelDecoder(
        in_levels=vision.levels,
        conv_dim=pd.conv_dim,
        mask_dim=pd.mask_dim,
        num_encoder_layers=pd.num_encoder_layers,
        num_heads=pd.num_heads,
        ffn_dim=pd.ffn_dim,
        mask_stride=pd.mask_stride,
        detail_dim=pd.detail_dim,
    )
    if pd.conv_dim != it.hidden_dim:
        raise ValueError(
            f"pixel_decoder.conv_dim={pd.conv_dim} must equal interface.hidden_dim={it.hidden_dim}"
        )
    interface = FindInterface(
        hidden_dim=it.hidden_dim,
        num_layers=it.num_layers,
        num_heads=it.num_heads,
        ffn_dim=it.ffn_dim,
        num_proposals=it.num_proposals,
        num_levels=it.num_levels,
        spatial_memories=it.spatial_memories,
        heads=FindHeads(hidden_dim=it.hidden_dim, dim_proj=it.dim_proj, mask_dim=pd.mask_dim),
    )
    model = FindModel(
        vision=vision,
        pixel_decoder=pixel_decoder,
        language=language,
        interface=interface,
        variant=it.variant,
        max_spatial_points=it.max_spatial_points,
        pixel_scores=it.pixel_scores,
        lang_proj_std=config.language.proj_init_std,
        logit_scale_init=config.language.logit_scale_init,
        class_logit_scale_init=config.language.class_logit_scale_init,
        whiten_text=config.language.whiten,
        conventions=config.conventions,
    )
    model.config = config
    set_trainable(model, config)
    return model


def set_trainable(model: FindModel, config: ModelConfig) -> None:
    """Freeze the parts the config marks as pretrained (lang_proj and logit_scale always learn).

    Hugging Face adapters freeze their pretrained weights themselves (their new feature pyramid
    stays trainable), so only the built-in encoders follow the ``trainable`` flags.
    """
    parts = [(model.pixel_decoder, config.pixel_decoder.trainable)]
    if config.vision.kind == "tiny":
        parts.append((model.vision, config.vision.trainable))
    if config.language.kind == "tiny":
        parts.append((model.language, config.language.trainable))
    for module, flag in parts:
        for p in module.parameters():
            p.requires_grad_(flag)


def build_preset(name: str, *, seed: int | None = 0) -> FindModel:
    """Build a preset with its default config; ``seed`` makes the initial weights repeatable."""
    if seed is not None:
        torch.manual_seed(seed)
    return build_model(preset_config(name))
