"""A tiny run directory and image folder for the index and search tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from findvl.build import build_model
from findvl.train.checkpoint import save_checkpoint
from findvl.train.config import train_config


def tiny_run(root: Path, seed: int = 0) -> Path:
    """An untrained find_tiny checkpoint saved as a run directory (as training writes it)."""
    torch.manual_seed(seed)
    config = train_config("find_tiny", [], steps=1, batch_size=1, seed=seed)
    model = build_model(config.model)
    save_checkpoint(root, step=0, model=model, config={"train": json.loads(config.to_json())})
    return root


def image_folder(root: Path, count: int, *, start: int = 0, side: int = 48) -> Path:
    """``count`` random PNG/JPEG images, every other one in a subfolder."""
    rng = np.random.default_rng(start)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = rng.integers(0, 255, (side + 8 * (i % 3), side, 3), dtype=np.uint8)
        folder = root / "sub" if i % 2 else root
        suffix = ".jpg" if i % 5 == 4 else ".png"
        Image.fromarray(pixels).save(folder / f"im{i:03d}{suffix}")
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except the build log (timings differ) -> its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "build.jsonl"
    }
