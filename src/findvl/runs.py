"""Load a trained model from a run directory or checkpoint (config rebuilt from the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from findvl.build import SHIPPED, build_model
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


def _trusted_path(value: str | None, key: str, ckpt: Path, given: str | None) -> str | None:
    """A directory named by a checkpoint, made safe: the command line's ``given`` wins; a
    shipped ``findvl:NAME`` stays; a relative path without ``..`` is taken relative to the run
    directory (the checkpoint's parent); anything else is refused, so a checkpoint cannot
    point the program at arbitrary directories."""
    if given is not None:
        return given
    if value is None:
        return None
    if value.startswith(SHIPPED):
        name = value[len(SHIPPED) :]
        if name and "/" not in name and "\\" not in name and name not in (".", ".."):
            return value
    elif not Path(value).is_absolute() and ".." not in Path(value).parts:
        return str(ckpt.parent / value)
    raise ValueError(
        f"{ckpt}/state.json: {key} {value!r} is outside the run directory; give the directory "
        f"on the command line ({_FLAGS[key]}) to use it"
    )


_FLAGS = {"model.vision.path": "--vision-path", "model.language.path": "--language-path"}


def load_run(
    path: str | Path,
    *,
    device: str = "cpu",
    vision_path: str | None = None,
    language_path: str | None = None,
) -> LoadedRun:
    """Rebuild the model from the checkpoint's config and load its weights (no pickle).

    Directories come from the command line (``vision_path``, ``language_path``) or from the
    checkpoint within the rules of :func:`_trusted_path`; the checkpoint's on-disk text cache
    directory is never used (the cache stays in memory).
    """
    import json

    ckpt = resolve_checkpoint(path)
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{ckpt}/state.json: unreadable ({error})") from None
    saved = state.get("config", {}) if isinstance(state, dict) else {}
    if not isinstance(saved, dict) or "train" not in saved:
        raise ValueError(f"{ckpt}/state.json: config.train is missing (not a findvl training run)")
    config = load_train_config(saved["train"])
    vision, language = config.model.vision, config.model.language
    vision.path = _trusted_path(vision.path, "model.vision.path", ckpt, vision_path)
    language.path = _trusted_path(language.path, "model.language.path", ckpt, language_path)
    language.cache_dir = None
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
