"""Model configuration: small dataclasses composed by a parent, saved with every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class VisionConfig:
    kind: str = "tiny"  # "tiny" (built-in, not pretrained) or "hf" (a local Hugging Face dir)
    path: str | None = None  # the local directory when kind == "hf"
    widths: tuple[int, int, int, int] = (32, 48, 64, 96)  # tiny backbone channels of res2..res5
    longest_side: int | None = None  # resize images so the longer side is this (None: keep)
    pyramid_channels: int = 256  # hf only: channels of the (trainable) simple feature pyramid
    dtype: str = "fp32"  # hf only: compute dtype of the frozen backbone (fp32, bf16, fp16)
    grid_stride: int = 16  # hf ViTs only: input pixels per patch (4/8 keep small images dense)
    trainable: bool = True  # tiny only; a pretrained (hf) backbone is always frozen


@dataclass
class LanguageConfig:
    kind: str = "tiny"  # "tiny" (hash tokenizer + small transformer) or "hf" (local dir)
    path: str | None = None  # the local directory when kind == "hf"
    layer: int | None = -12  # hidden_states index used as features (paper ablation; causal LMs)
    max_length: int = 77  # tokens per text, BOS included
    dtype: str = "fp32"  # compute dtype of a pretrained LM (fp32, bf16, fp16)
    dim: int = 64  # tiny encoder width
    num_layers: int = 1  # tiny encoder depth
    trainable: bool = True  # tiny only; a pretrained (hf) language model is always frozen
    # init std of lang_proj; None: 1/sqrt(feature dim), so unit-variance token features project
    # to unit-variance tokens, as large as the learned queries they are added to and attended
    # by (0.02, the official value, is that rule for a ~2.5k-wide LLM; for a 64-wide encoder it
    # makes every text token ~8x smaller than the queries and all captions/phrases look alike)
    proj_init_std: float | None = None
    cache_entries: int = 0  # > 0: cache features of that many texts (frozen encoders only)
    cache_dir: str | None = None  # also keep cached text features on disk (safetensors)


@dataclass
class PixelDecoderConfig:
    conv_dim: int = 512  # width of the three levels (= interface hidden size)
    mask_dim: int = 512  # channels of mask_features (pixel space)
    num_encoder_layers: int = 6  # transformer layers on the coarsest level
    num_heads: int = 8
    ffn_dim: int = 2048
    trainable: bool = True  # False when it comes with pretrained weights


@dataclass
class InterfaceConfig:
    hidden_dim: int = 512
    num_layers: int = 9
    num_heads: int = 8
    ffn_dim: int = 2048
    num_proposals: int = 100  # per proposal group; the image query is one more
    num_levels: int = 3  # image levels attended, strides 32/16/8
    spatial_memories: int = 32
    dim_proj: int = 512  # semantic space size
    max_spatial_points: int = 512  # points drawn per image for spatial tokens
    variant: str = "official"  # prototype variant: "official" or "paper"
    pixel_scores: str = "dot"  # "dot" (released weights) or "cosine"


@dataclass
class ModelConfig:
    preset: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; an unknown key raises ``ValueError`` naming it."""
    if not isinstance(data, dict):
        raise ValueError(
            f"config {path or cls.__name__}: expected an object, got {type(data).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f"{path}.{key}" if path else key
        if key not in fields:
            raise ValueError(f"unknown config key {name!r} (known: {sorted(fields)})")
        sub = (
            fields[key].default_factory
            if fields[key].default_factory is not dataclasses.MISSING
            else None
        )
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[key] = from_dict(sub, value, name)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Apply ``key.sub=value`` strings (values parsed as JSON, else kept as strings)."""
    data = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(
                    f"unknown config key {'.'.join(parts[: i + 1])!r} in --set {item!r}"
                )
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return from_dict(type(config), data)
