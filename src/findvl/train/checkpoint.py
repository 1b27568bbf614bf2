"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a directory ``run_dir/step_XXXXXXXX`` holding

* ``model.safetensors`` — the model's state dict (minus ``skip_prefixes``, e.g. frozen
  foundation models that are rebuilt from their own files);
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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from findvl.train.checkpoint_integrity import (
    check_finite,
    check_hashes,
    check_model_tensors,
    file_hashes,
)
from findvl.train.optim_state import flatten_optimizer_state, unflatten_optimizer_state
from findvl.train.rng import restore_rng as _restore_rng
from findvl.train.rng import rng_json as _rng_json
from findvl.train.rng import rng_tensors as _rng_tensors

FORMAT = "findvl-train-checkpoint"
VERSION = 1
STEP_DIR = re.compile(r"^step_(\d{8,})$")
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


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


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        if value.numel() and value.untyped_storage().data_ptr() in seen:
            value = value.clone()  # safetensors refuses tensors that share memory
        if value.numel():
            seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    save_file(out, str(path))
    _fsync_file(path)


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
            rebuilt from their own weights); loading expects the same prefixes.
        keep_last: prune to this many complete checkpoints; ``None`` keeps all.

    Returns:
        The checkpoint directory.
    """
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
    _save_tensors(tmp / "model.safetensors", _model_tensors(model, skip_prefixes))
    _save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    _save_tensors(tmp / "rng.safetensors", _rng_tensors())
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


def _read_state(path: Path, *, verify: bool = False) -> dict[str, Any]:
    """``state.json`` of a checkpoint after checking it against the files (sizes; also the
    content hashes with ``verify``); ``ValueError`` if the checkpoint is incomplete or
    corrupt, ``FileNotFoundError`` if it is not there."""
    state_file = path / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"checkpoint {path} has no state.json (incomplete or missing)")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"checkpoint {path}: state.json is unreadable: {err!r:.200}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: state.json is not a {FORMAT} file")
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint {path}: unsupported version {state.get('version')!r}")
    for name, size in state.get("files", {}).items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            raise ValueError(f"checkpoint {path}: {name} is missing or has the wrong size")
    if verify and "hashes" in state:
        check_hashes(path, state["hashes"])
    for name in TENSOR_FILES:
        try:
            with safe_open(str(path / name), framework="pt") as f:
                f.keys()
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"checkpoint {path}: {name} is unreadable: {err}") from err
    return state


def is_complete(path: str | Path, *, verify: bool = False) -> bool:
    """Whether ``path`` holds a complete, readable checkpoint (``verify``: hashes match too)."""
    return _problem(Path(path), verify=verify) is None


def _problem(path: Path, *, verify: bool) -> str | None:
    """Why ``path`` is not a usable checkpoint, or None."""
    try:
        _read_state(path, verify=verify)
    except (OSError, ValueError) as error:
        return str(error)
    return None


def _step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := STEP_DIR.match(p.name))]
    return sorted(found, reverse=True)


def find_latest(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or ``None``.

    Incomplete or corrupt directories (wrong sizes or content hashes) are skipped, and the
    fallback to an older step is reported on stderr naming both; the ``latest`` pointer is not
    trusted for this.
    """
    skipped: list[tuple[Path, str]] = []
    for _, path in _step_dirs(Path(run_dir)):
        problem = _problem(path, verify=True)
        if problem is None:
            for bad, why in skipped:
                print(f"warning: skipping {bad} ({why}); using {path}", file=sys.stderr)
            return path
        skipped.append((path, problem))
    return None


def prune_checkpoints(run_dir: str | Path, *, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest complete checkpoints, older incomplete ones and
    leftovers of interrupted saves of this process. Returns the deleted paths."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    run_dir = Path(run_dir)
    removed: list[Path] = []
    kept = 0
    for _, path in _step_dirs(run_dir):
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

    Returns:
        The :class:`TrainState` (step, config, data position).
    """
    path = Path(path)
    state = _read_state(path, verify=True)
    skip = tuple(state["skip_prefixes"])
    loaded = load_file(str(path / "model.safetensors"), device=map_location)
    check_finite(path, loaded, "model.safetensors")
    expected = _model_tensors(model, skip)
    check_model_tensors(path, loaded, expected)
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
