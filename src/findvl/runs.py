"""Load a trained model for inference: a run directory, one of its checkpoints or a model file.

No training code is imported (:mod:`findvl.train` stays unloaded): a checkpoint is a model file
(:mod:`findvl.model_file`) with the training state beside it, read through
:mod:`findvl.run_files`. Checkpoints written before the model file existed (no ``config.json``;
every tensor in ``model.safetensors``, the config in ``state.json``) load too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findvl.build import build_model, load_model
from findvl.config import ModelConfig, from_dict
from findvl.model.find import FindModel
from findvl.model_file import (
    WEIGHTS_FILE,
    check_finite,
    check_model_tensors,
    is_model_file,
    read_model_config,
    read_vocabulary,
)
from findvl.presets import SHIPPED
from findvl.run_files import find_latest, read_state


@dataclass
class LoadedRun:
    """A model ready for inference with its dataset vocabulary.

    Attributes:
        model: the model, in eval mode.
        class_names: the training vocabulary (class index -> name).
        isthing: per class, thing (True) or stuff (False).
        config: the model's config (encoder paths as loaded).
        checkpoint: the checkpoint (or model file) directory loaded.
        run_config: the training run's config as saved (plain JSON; empty for a model file
            outside a run).
    """

    model: FindModel
    class_names: list[str]
    isthing: list[bool]
    config: ModelConfig
    checkpoint: Path
    run_config: dict[str, Any] = field(default_factory=dict)

    @property
    def data_root(self) -> str:
        """The dataset root the run trained on ("" if unknown)."""
        data = self.run_config.get("data", {})
        return str(data.get("root", "")) if isinstance(data, dict) else ""


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its latest checkpoint), a checkpoint or a model file directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: no such file or directory: {path}")
    if (path / "state.json").is_file() or is_model_file(path):
        return path
    latest = find_latest(path)
    if latest is None:
        raise FileNotFoundError(
            f"checkpoint: {path} holds no complete checkpoint (step_*/state.json) and is no "
            "model file (config.json + model.safetensors)"
        )
    return latest


def _trusted_path(value: str | None, key: str, ckpt: Path, given: str | None) -> str | None:
    """A directory named by a checkpoint, made safe: the command line's ``given`` wins; a
    shipped ``findvl:NAME`` (or ``findvl:NAME/SUBDIR``) stays; a relative path without ``..``
    is taken relative to the run directory (the checkpoint's parent); anything else is
    refused, so a checkpoint cannot point the program at arbitrary directories."""
    if given is not None:
        return given if given.startswith(SHIPPED) else os.path.abspath(given)
    if value is None:
        return None
    if value.startswith(SHIPPED):
        parts = value[len(SHIPPED) :].split("/")  # a shipped NAME or NAME/SUBDIR
        if all(p and "\\" not in p and p not in (".", "..") for p in parts):
            return value
    elif not Path(value).is_absolute() and ".." not in Path(value).parts:
        return os.path.join(os.path.abspath(ckpt.parent), value)
    raise ValueError(
        f"{ckpt}: {key} {value!r} is outside the run directory; give the directory on the "
        f"command line ({_FLAGS[key]}) to use it"
    )


_FLAGS = {"model.vision.path": "--vision-path", "model.language.path": "--language-path"}


def _trusted(config: ModelConfig, ckpt: Path, vision: str | None, language: str | None):
    """``config`` with trusted encoder paths and no on-disk text cache."""
    v, lang = config.vision, config.language
    return dataclasses.replace(
        config,
        vision=dataclasses.replace(
            v, path=_trusted_path(v.path, "model.vision.path", ckpt, vision)
        ),
        language=dataclasses.replace(
            lang,
            path=_trusted_path(lang.path, "model.language.path", ckpt, language),
            cache_dir=None,
        ),
    )


def _state(ckpt: Path) -> dict[str, Any]:
    """A checkpoint's verified ``state.json`` ({} for a model file outside a run)."""
    if not (ckpt / "state.json").is_file():
        return {}
    return read_state(ckpt, verify=True)


def _legacy_model(ckpt: Path, state: dict[str, Any], config: ModelConfig) -> FindModel:
    """A checkpoint from before the model file: every state tensor in ``model.safetensors``."""
    from safetensors.torch import load_file

    model = build_model(config)
    loaded = load_file(str(ckpt / WEIGHTS_FILE))
    check_finite(ckpt, loaded, WEIGHTS_FILE)
    skip = tuple(state.get("skip_prefixes", []))
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    check_model_tensors(ckpt, loaded, expected)
    model.load_state_dict(loaded, strict=False)
    return model


def load_run(
    path: str | Path,
    *,
    device: str = "cpu",
    vision_path: str | None = None,
    language_path: str | None = None,
) -> LoadedRun:
    """Rebuild the model from its config and load its weights (no pickle, no training code).

    Directories come from the command line (``vision_path``, ``language_path``) or from the
    checkpoint within the rules of :func:`_trusted_path`; the checkpoint's on-disk text cache
    directory is never used (the cache stays in memory). The foundation models found there
    must hold the weights the model was saved with (one ``ValueError`` line otherwise).
    """
    ckpt = resolve_checkpoint(path)
    state = _state(ckpt)
    saved = state.get("config", {}) if isinstance(state.get("config"), dict) else {}
    run_config = saved.get("train", {}) if isinstance(saved.get("train"), dict) else {}
    if is_model_file(ckpt):
        config = _trusted(read_model_config(ckpt), ckpt, vision_path, language_path)
        model, config = load_model(ckpt, config=config)
        vocab = read_vocabulary(ckpt)
    else:
        if not isinstance(run_config.get("model"), dict):
            raise ValueError(f"{ckpt}/state.json: config.train.model is missing (not a findvl run)")
        try:
            config = from_dict(ModelConfig, run_config["model"])
        except ValueError as error:
            raise ValueError(f"{ckpt}/state.json: config.train.model: {error}") from None
        config = _trusted(config, ckpt, vision_path, language_path)
        model = _legacy_model(ckpt, state, config)
        vocab = None
    if vocab is None:
        names = saved.get("vocabulary", {}) if isinstance(saved.get("vocabulary"), dict) else {}
        vocab = list(names.get("names", [])), list(names.get("isthing", []))
    return LoadedRun(
        model=model.to(device).eval(),
        class_names=list(vocab[0]),
        isthing=list(vocab[1]),
        config=config,
        checkpoint=ckpt,
        run_config=json.loads(json.dumps(run_config)),
    )
