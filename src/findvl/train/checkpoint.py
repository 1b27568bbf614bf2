"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a directory ``run_dir/step_XXXXXXXX`` holding

* the model: for a :class:`~findvl.model.find.FindModel` saved with its ``model_config``, a
  model file (:mod:`findvl.model_file`: ``config.json``, ``model.safetensors`` with the learned
  weights only, the frozen foundation models referenced by path and hash, ``vocabulary.json``)
  that inference loads without this package; for any other module ``model.safetensors`` holds
  its state dict (minus ``skip_prefixes``);
* ``optimizer.safetensors`` + ``optimizer.json`` — the optimizer state dict, flattened: tensors
  under ``state.<param id>.<name>``, param groups and Python-number state in JSON;
* ``rng.safetensors`` — torch CPU (and CUDA) generator states;
* ``state.json`` — step, config, scheduler state, data position, Python and NumPy RNG states
  and the size and SHA-256 of every file above. It is written last, so a directory whose
  ``state.json`` is missing, unreadable or disagrees with the files is incomplete and ignored
  (:func:`find_latest` says so on stderr when it falls back to an older step); loading checks
  the hashes and refuses weights holding NaN or infinity.

Directories are written under a temporary name, fsynced and renamed, then the ``latest``
pointer file is replaced atomically; older checkpoints are pruned to the last ``keep_last``.
Reading (:func:`find_latest`, :func:`is_complete`) lives in :mod:`findvl.run_files`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from findvl.config import ModelConfig
from findvl.model_file import (
    check_finite,
    check_model_tensors,
    load_learned_weights,
    read_model_config,
    save_tensors,
    write_model_file,
)
from findvl.run_files import (  # noqa: F401  (find_latest, is_complete: re-exported)
    FORMAT,
    STEP_DIR,
    TENSOR_FILES,
    VERSION,
    file_hashes,
    find_latest,
    is_complete,
    read_state,
    step_dirs,
)
from findvl.train.optim_state import (  # noqa: F401  (re-exported)
    flatten_optimizer_state,
    unflatten_optimizer_state,
)
from findvl.train.rng import restore_rng as _restore_rng
from findvl.train.rng import rng_json as _rng_json
from findvl.train.rng import rng_tensors as _rng_tensors


@dataclass
class TrainState:
    """What a checkpoint restores besides the tensors.

    Attributes:
        step: optimizer steps taken.
        config: the run's configuration (JSON-able mapping).
        data_position: where the data stream resumes (e.g. ``{"epoch": 3, "index": 1200}``).
        path: the checkpoint directory it was loaded from.
    """

    step: int
    config: dict[str, Any] = field(default_factory=dict)
    data_position: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def step_dir_name(step: int) -> str:
    """``step_XXXXXXXX`` (zero-padded to 8 digits)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return f"step_{step:08d}"


def _json_checked(value: Any, what: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not JSON-serialisable: {err}") from err
    return value


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())


# --- save ------------------------------------------------------------------------------------


def _model_tensors(model: nn.Module, skip_prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip_prefixes)}


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` directory to ``final`` (replacing an older one)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old)


def _write_latest(run_dir: Path, name: str) -> None:
    tmp = run_dir / f".latest-{os.getpid()}.tmp"
    tmp.write_text(name + "\n", encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, run_dir / "latest")
    _fsync_dir(run_dir)


def save_checkpoint(
    run_dir: str | Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    config: dict[str, Any] | None = None,
    data_position: dict[str, Any] | None = None,
    skip_prefixes: tuple[str, ...] = (),
    keep_last: int | None = 3,
    model_config: ModelConfig | None = None,
    vocabulary: dict[str, Any] | None = None,
    base: str | Path | None = None,
) -> Path:
    """Write the training state atomically to ``run_dir/step_XXXXXXXX``.

    Call it on the main process only; the RNG states saved are this process's.

    Args:
        run_dir: run directory (created if missing).
        step: optimizer steps taken so far.
        model: the unwrapped model (not the DDP wrapper).
        optimizer: optimizer whose state to save.
        scheduler: scheduler whose (JSON-able) state to save.
        config: run configuration (JSON-able).
        data_position: where the data stream resumes (JSON-able).
        skip_prefixes: model state keys starting with these are not saved (frozen parts
            rebuilt from their own weights); loading expects the same prefixes. Not with
            ``model_config`` (the model file knows its frozen parts).
        keep_last: prune to this many complete checkpoints; ``None`` keeps all.
        model_config: the config ``model`` was built from: the model is written as a model
            file (:func:`findvl.model_file.write_model_file`).
        vocabulary: the model file's ``{"names": [...], "isthing": [...]}``.
        base: what relative encoder paths of ``model_config`` are relative to (None: the
            working directory).

    Returns:
        The checkpoint directory.
    """
    if model_config is not None and skip_prefixes:
        raise ValueError("save_checkpoint: skip_prefixes and model_config exclude each other")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "config": _json_checked(dict(config or {}), "config"),
        "data_position": _json_checked(dict(data_position or {}), "data_position"),
        "scheduler": _json_checked(scheduler.state_dict(), "scheduler state")
        if scheduler is not None
        else None,
        "skip_prefixes": list(skip_prefixes),
        "model_file": model_config is not None,
        "has_optimizer": optimizer is not None,
        "rng": _rng_json(),
    }
    tmp = run_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    opt_tensors: dict[str, torch.Tensor] = {}
    if optimizer is not None:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        opt_meta = _json_checked(opt_meta, "optimizer state (non-tensor part)")
        _write_json(tmp / "optimizer.json", opt_meta)
    if model_config is not None:
        write_model_file(tmp, model, model_config, vocabulary=vocabulary, base=base)
    else:
        save_tensors(tmp / "model.safetensors", _model_tensors(model, skip_prefixes))
    save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    save_tensors(tmp / "rng.safetensors", _rng_tensors())
    state["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    state["hashes"] = file_hashes(tmp)
    _write_json(tmp / "state.json", state)
    _fsync_dir(tmp)
    final = run_dir / name
    _publish(tmp, final)
    _write_latest(run_dir, name)
    if keep_last is not None:
        prune_checkpoints(run_dir, keep_last=keep_last)
    return final


# --- find / prune ----------------------------------------------------------------------------


def prune_checkpoints(run_dir: str | Path, *, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest complete checkpoints, older incomplete ones and
    leftovers of interrupted saves of this process. Returns the deleted paths."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    run_dir = Path(run_dir)
    removed: list[Path] = []
    kept = 0
    for _, path in step_dirs(run_dir):
        if kept < keep_last and is_complete(path):
            kept += 1
            continue
        if kept == 0:
            continue  # never delete anything newer than the newest complete checkpoint
        shutil.rmtree(path)
        removed.append(path)
    for path in run_dir.glob(f".tmp-step_*-{os.getpid()}"):
        shutil.rmtree(path)
        removed.append(path)
    return removed


# --- load ------------------------------------------------------------------------------------


def _load_optimizer(path: Path, optimizer: torch.optim.Optimizer, device: str) -> None:
    meta = json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
    saved = unflatten_optimizer_state(load_file(str(path / "optimizer.safetensors"), device), meta)
    groups = optimizer.param_groups
    sizes = [len(g["params"]) for g in groups]
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    if sizes != saved_sizes:
        raise ValueError(
            f"checkpoint {path}: optimizer param group sizes {saved_sizes} do not match the "
            f"optimizer's {sizes}"
        )
    for group, saved_group in zip(groups, saved["param_groups"]):
        names = group.get("names", [str(i) for i in saved_group["params"]])
        for name, param, pid in zip(names, group["params"], saved_group["params"]):
            for key, value in saved["state"].get(pid, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise ValueError(
                        f"checkpoint {path}: optimizer state {key!r} of parameter {name} has "
                        f"shape {tuple(value.shape)}, the parameter {tuple(param.shape)}"
                    )
        for key, value in group.items():  # JSON turned tuples (betas) into lists
            if isinstance(value, tuple) and isinstance(saved_group.get(key), list):
                saved_group[key] = tuple(saved_group[key])
    optimizer.load_state_dict(saved)


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    restore_rng: bool = True,
    map_location: str = "cpu",
    model_config: ModelConfig | None = None,
) -> TrainState:
    """Restore a checkpoint written by :func:`save_checkpoint` into live objects.

    Raises ``ValueError`` naming the parameters when the model's keys or shapes differ from
    the checkpoint's, or naming the file when the checkpoint is incomplete or corrupt.

    Args:
        path: a ``step_XXXXXXXX`` directory (e.g. from :func:`find_latest`).
        model: the unwrapped model to load into (in place).
        optimizer: optimizer built over the same parameters, in the same group order.
        scheduler: scheduler to restore.
        restore_rng: also restore Python, NumPy and torch RNG states.
        map_location: device for the loaded tensors before they are copied in.
        model_config: for a model-file checkpoint, the config ``model`` was built from (its
            encoder paths are checked against the saved hashes); None: ``model.config``, else
            the saved one.

    Returns:
        The :class:`TrainState` (step, config, data position).
    """
    path = Path(path)
    state = read_state(path, verify=True)
    if state.get("model_file"):
        config = model_config or getattr(model, "config", None) or read_model_config(path)
        load_learned_weights(path, model, config, map_location=map_location)
    else:
        loaded = load_file(str(path / "model.safetensors"), device=map_location)
        check_finite(path, loaded, "model.safetensors")
        check_model_tensors(path, loaded, _model_tensors(model, tuple(state["skip_prefixes"])))
        model.load_state_dict(loaded, strict=False)
    if optimizer is not None:
        if not state["has_optimizer"]:
            raise ValueError(f"checkpoint {path} holds no optimizer state")
        _load_optimizer(path, optimizer, map_location)
    if scheduler is not None:
        if state["scheduler"] is None:
            raise ValueError(f"checkpoint {path} holds no scheduler state")
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        _restore_rng(state["rng"], load_file(str(path / "rng.safetensors")))
    return TrainState(
        step=int(state["step"]),
        config=state["config"],
        data_position=state["data_position"],
        path=path,
    )
