"""Load a trained model from a run directory or checkpoint (config rebuilt from the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from findvl.build import build_model
from findvl.model.find import FindModel
from findvl.train.checkpoint import find_latest, load_checkpoint
from findvl.train.config import TrainConfig, load_train_config


@dataclass
class LoadedRun:
    """A model ready for inference with its dataset vocabulary.

    Attributes:
        model: the model, in eval mode.
        class_names: the training vocabulary (class index -> name).
        isthing: per class, thing (True) or stuff (False).
        config: the run's training config.
        checkpoint: the checkpoint directory loaded.
    """

    model: FindModel
    class_names: list[str]
    isthing: list[bool]
    config: TrainConfig
    checkpoint: Path


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its latest checkpoint) or a checkpoint directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: no such file or directory: {path}")
    if (path / "state.json").is_file():
        return path
    latest = find_latest(path)
    if latest is None:
        raise FileNotFoundError(
            f"checkpoint: {path} holds no complete checkpoint (step_*/state.json)"
        )
    return latest


def load_run(path: str | Path, *, device: str = "cpu") -> LoadedRun:
    """Rebuild the model from the checkpoint's config and load its weights (no pickle)."""
    import json

    ckpt = resolve_checkpoint(path)
    state = json.loads((ckpt / "state.json").read_text())
    saved = state.get("config", {})
    if "train" not in saved:
        raise ValueError(f"{ckpt}/state.json: config.train is missing (not a findvl training run)")
    config = load_train_config(saved["train"])
    model = build_model(config.model)
    load_checkpoint(ckpt, model=model, restore_rng=False)
    vocab = saved.get("vocabulary", {})
    return LoadedRun(
        model=model.to(device).eval(),
        class_names=list(vocab.get("names", [])),
        isthing=list(vocab.get("isthing", [])),
        config=config,
        checkpoint=ckpt,
    )
