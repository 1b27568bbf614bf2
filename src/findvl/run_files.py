"""Reading run directories without training code: checkpoints, their state and integrity.

A run directory holds checkpoints ``step_XXXXXXXX`` written by
:func:`findvl.train.checkpoint.save_checkpoint`. Each is a model file (``config.json`` +
``model.safetensors`` + ``vocabulary.json``, :mod:`findvl.model_file`) with the training state
beside it (``optimizer.*``, ``rng.safetensors``) and ``state.json``, written last, holding the
size and SHA-256 of every other file. A directory whose ``state.json`` is missing, unreadable
or disagrees with the files is incomplete and skipped.

Checkpoints written before the model file existed hold no ``config.json``; their
``model.safetensors`` has every state tensor and their config is in ``state.json``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from safetensors import safe_open

from findvl.model_file import file_sha256

FORMAT = "findvl-train-checkpoint"
VERSION = 1
STEP_DIR = re.compile(r"^step_(\d{8,})$")
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


def file_hashes(directory: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of every file in ``directory`` (sorted by name)."""
    return {p.name: file_sha256(p) for p in sorted(directory.iterdir()) if p.is_file()}


def check_hashes(path: Path, hashes: dict[str, str]) -> None:
    """``ValueError`` naming the first file of checkpoint ``path`` whose hash differs."""
    if not isinstance(hashes, dict):
        raise ValueError(f"checkpoint {path}: state.json field 'hashes' is not an object")
    for name, expected in sorted(hashes.items()):
        file = path / name
        if "/" in name or name.startswith(".") or not file.is_file():
            raise ValueError(f"checkpoint {path}: {name} is missing")
        if file_sha256(file) != expected:
            raise ValueError(
                f"checkpoint {path}: {name} does not match its recorded SHA-256 (the file is "
                "damaged; restore it or use another checkpoint)"
            )


def read_state(path: Path, *, verify: bool = False) -> dict[str, Any]:
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


def checkpoint_problem(path: Path, *, verify: bool) -> str | None:
    """Why ``path`` is not a usable checkpoint, or None."""
    try:
        read_state(path, verify=verify)
    except (OSError, ValueError) as error:
        return str(error)
    return None


def is_complete(path: str | Path, *, verify: bool = False) -> bool:
    """Whether ``path`` holds a complete, readable checkpoint (``verify``: hashes match too)."""
    return checkpoint_problem(Path(path), verify=verify) is None


def step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, directory)`` of every ``step_*`` directory, newest first."""
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
    for _, path in step_dirs(Path(run_dir)):
        problem = checkpoint_problem(path, verify=True)
        if problem is None:
            for bad, why in skipped:
                print(f"warning: skipping {bad} ({why}); using {path}", file=sys.stderr)
            return path
        skipped.append((path, problem))
    return None
