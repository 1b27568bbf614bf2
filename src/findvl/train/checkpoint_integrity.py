"""Integrity of checkpoint directories: content hashes, finite weights, leftovers of saves.

A checkpoint's ``state.json`` records the SHA-256 of every other file; a file whose bytes
changed without changing its size (bit rot, a partial overwrite) is then caught at load time
instead of loading weights that predict nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import torch

_CHUNK = 1 << 20
_TMP_DIR = re.compile(r"^\.tmp-(step_\d{8,})-\d+$")
_OLD_DIR = re.compile(r"^\.old-(step_\d{8,})-\d+$")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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


def check_model_tensors(
    path: Path, loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """``ValueError`` naming missing, unexpected and differently shaped model tensors."""
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(loaded) & set(expected))
        if loaded[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches [{'; '.join(mismatched)}]")
    if problems:
        raise ValueError(f"checkpoint {path / 'model.safetensors'}: " + ", ".join(problems))


def check_finite(path: Path, tensors: dict[str, torch.Tensor], file: str) -> None:
    """``ValueError`` naming the first floating-point tensor holding NaN or infinity."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"checkpoint {path}: {file}: {name} holds NaN or infinite values (the run "
                "diverged before this save; use an earlier checkpoint)"
            )


def clean_interrupted_saves(run_dir: Path) -> list[Path]:
    """Remove leftovers of saves that were killed, whoever wrote them.

    Call it only while holding the run directory's lock (no save is in flight then).
    ``.tmp-step_*`` directories are unfinished saves and are deleted; an ``.old-step_*``
    directory is the previous copy of a re-saved step: restored when the new copy never
    arrived, deleted otherwise. Returns the removed paths.
    """
    removed: list[Path] = []
    if not run_dir.is_dir():
        return removed
    for path in sorted(run_dir.iterdir()):
        if _TMP_DIR.match(path.name) and path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif (m := _OLD_DIR.match(path.name)) and path.is_dir():
            final = run_dir / m.group(1)
            if final.exists():
                shutil.rmtree(path)
                removed.append(path)
            else:
                os.rename(path, final)
    return removed
