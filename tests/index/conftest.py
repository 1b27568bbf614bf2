"""Builders of the index and search tests: an image folder and a tree's bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _image_folder(root: Path, count: int, *, start: int = 0, side: int = 48) -> Path:
    """``count`` random PNG/JPEG images, every other one in a subfolder."""
    rng = np.random.default_rng(start)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = rng.integers(0, 255, (side + 8 * (i % 3), side, 3), dtype=np.uint8)
        folder = root / "sub" if i % 2 else root
        suffix = ".jpg" if i % 5 == 4 else ".png"
        Image.fromarray(pixels).save(folder / f"im{i:03d}{suffix}")
    return root


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except the build log (timings differ) -> its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "build.jsonl"
    }


@pytest.fixture(scope="session")
def image_folder():
    """``image_folder(root, count, *, start=0, side=48)``: random PNG/JPEG images."""
    return _image_folder


@pytest.fixture(scope="session")
def tree_bytes():
    """``tree_bytes(root)``: relative path -> bytes of every file but the build log."""
    return _tree_bytes
