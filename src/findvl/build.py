"""Builders: a config (or a preset of :mod:`findvl.presets`) -> the whole module tree."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from findvl.config import LanguageConfig, ModelConfig, VisionConfig
from findvl.encoders.language import LanguageEncoder, TinyLanguageEncoder
from findvl.encoders.pixel_decoder import PixelDecoder
from findvl.encoders.vision import TinyBackbone, VisionEncoder
from findvl.model.find import FindModel
from findvl.model.heads import FindHeads
from findvl.model.interface import FindInterface
from findvl.model_file import (
    load_learned_weights,
    read_model_config,
    shipped_path,
    with_paths_under,
    write_model_file,
)
from findvl.presets import (  # noqa: F401  (re-exported: the presets' home is findvl.presets)
    PRESETS,
    SHIPPED,
    find_dinov2_clip_config,
    find_sam_llama_config,
    find_synth_config,
    find_tiny_config,
    preset_config,
)


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


def _require_path(path: str | None, field: str) -> str:
    if not path:
        raise ValueError(f"{field}: a local model directory is required")
    if path.startswith(SHIPPED):
        path = shipped_path(path[len(SHIPPED) :])
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{field}: no directory at {path}")
    return path


def build_model(config: ModelConfig) -> FindModel:
    """Build a :class:`FindModel` from its config and freeze what the config says is frozen.

    The config is validated first (:meth:`ModelConfig.validate`): a bad value fails here, in one
    line naming its key, not at the first forward."""
    config.validate()
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
        bottom_up=pd.bottom_up,
        attend_finest=pd.attend_finest,
    )
    interface = FindInterface(
        hidden_dim=it.hidden_dim,
        num_layers=it.num_layers,
        num_heads=it.num_heads,
        ffn_dim=it.ffn_dim,
        num_proposals=it.num_proposals,
        num_levels=it.num_levels,
        spatial_memories=it.spatial_memories,
        heads=FindHeads(
            hidden_dim=it.hidden_dim,
            dim_proj=it.dim_proj,
            mask_dim=pd.mask_dim,
            pool_image_query=config.conventions.image_query == "pooled",
        ),
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
    """Freeze the parts the config marks as pretrained or fixed (logit_scale always learns;
    lang_proj unless ``language.proj_trainable`` is false).

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
    model.lang_proj.requires_grad_(config.language.proj_trainable)


def build_preset(name: str, *, seed: int | None = 0) -> FindModel:
    """Build a preset with its default config; ``seed`` makes the initial weights repeatable.

    The seed applies to a forked random state: torch's global generator is left as it was."""
    if seed is None:
        return build_model(preset_config(name))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(preset_config(name))


def save_model(
    model: FindModel,
    config: ModelConfig,
    directory: str | os.PathLike,
    *,
    vocabulary: dict | None = None,
    base: str | os.PathLike | None = None,
) -> Path:
    """Write ``model`` as a model file (:mod:`findvl.model_file`): ``config.json`` and its
    learned weights; the foundation models stay where ``config`` names them (with their hash).

    Args:
        model: built from ``config`` (e.g. by :func:`build_model`).
        config: its config.
        directory: the model file's directory (created if missing).
        vocabulary: ``{"names": [...], "isthing": [...]}`` of its training classes.
        base: what relative encoder paths of ``config`` are relative to (None: the working
            directory, as :func:`build_model` reads them).
    """
    return write_model_file(directory, model, config, vocabulary=vocabulary, base=base)


def load_model(
    directory: str | os.PathLike,
    *,
    config: ModelConfig | None = None,
    map_location: str = "cpu",
) -> tuple[FindModel, ModelConfig]:
    """Rebuild a model saved by :func:`save_model`; no training code is imported.

    Relative encoder paths of the config are taken relative to the model file's parent
    directory (a checkpoint's run directory). Loading fails with one ``ValueError`` line if a
    foundation directory holds other weights than the ones saved with, or the stored tensors
    do not fit the model.

    Args:
        directory: the model file's directory.
        config: build from this config instead of the saved one (e.g. with encoder paths
            moved); its foundation weights must still match.
        map_location: device the weights are read to before the copy.

    Returns:
        ``(model, config)``: the model (on CPU, in training mode as built) and its config.
    """
    directory = Path(directory)
    if config is None:
        config = read_model_config(directory)
    config = with_paths_under(config, directory.resolve().parent)
    model = build_model(config)
    load_learned_weights(directory, model, config, map_location=map_location)
    return model, config
