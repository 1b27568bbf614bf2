"""The whole configuration of a training run (saved in the run directory and every checkpoint)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from findvl.build import preset_config
from findvl.config import ModelConfig, apply_overrides, from_dict


@dataclass
class DataConfig:
    root: str = ""  # dataset root (synthetic or COCO-style layout)
    split: str = "train"
    max_prompts: int = 4  # visual prompts per image
    max_phrases: int = 4  # grounding phrases per image
    max_entities: int = 6  # entities per entity caption
    visual_prob: float = 0.5  # entities given as visual references
    flip: bool = True
    scale_min: float = 1.0  # resize-scale augmentation range
    scale_max: float = 1.0
    workers: int = 2  # DataLoader processes decoding upcoming batches (0: in the loop)
    prefetch: int = 4  # batches each worker loads ahead
    correction_prob: float = 0.5  # batches with a simulated correction click (official 1 in 2)


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.05
    clip_grad_norm: float = 0.01  # official value; <= 0 disables
    schedule: str = "multistep"  # "multistep" or "cosine"
    warmup_steps: int = 10
    accumulation: int = 1  # micro-batches per optimizer step


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: dict[str, float] = field(default_factory=dict)  # LossWeights overrides
    match_every_layer: bool = True  # official; False matches once on the final layer (faster)
    steps: int = 1000
    batch_size: int = 8  # per process
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # mixed precision (CUDA only)
    # torch.use_deterministic_algorithms (warn_only): on the CPU two runs of one config then give
    # the same weights with several threads too (without it, two threads differ after ~7 steps)
    deterministic: bool = False
    log_every: int = 10
    checkpoint_every: int = 200
    keep_last: int = 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def train_config(preset: str, overrides: list[str] | None = None, **fields: Any) -> TrainConfig:
    """A run config for ``preset`` with ``fields`` set and ``key=value`` overrides applied."""
    config = TrainConfig(model=preset_config(preset), **fields)
    return validate(apply_overrides(config, overrides or []))


def load_train_config(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` from its dict (unknown keys are errors)."""
    config = from_dict(TrainConfig, data)
    config.loss = dict(config.loss)
    return validate(config)


def validate(config: TrainConfig) -> TrainConfig:
    """Check values the dataclasses cannot: loss keys and positive counts (``ValueError``)."""
    from findvl.train.losses import LossWeights

    if not isinstance(config.loss, dict):
        raise ValueError(f"config key 'loss' must be an object, got {config.loss!r}")
    weights = LossWeights.from_dict(dict(config.loss))  # names any unknown loss key
    it = config.model.interface
    if weights.retrieval_tokens and it.dim_proj != it.hidden_dim:
        raise ValueError(
            f"loss.retrieval_tokens={weights.retrieval_tokens} compares caption tokens "
            f"(interface.hidden_dim={it.hidden_dim} wide) with object embeddings "
            f"(interface.dim_proj={it.dim_proj}): set it to 0 or make the two equal"
        )
    for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_last"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
            raise ValueError(
                f"config key {name!r} must be a positive integer, got {getattr(config, name)!r}"
            )
    if config.optim.accumulation < 1:
        raise ValueError(
            f"config key 'optim.accumulation' must be >= 1, got {config.optim.accumulation!r}"
        )
    return config
