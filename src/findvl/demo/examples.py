"""Example images and texts for the page: the synthetic val split.

From ``--data`` (a dataset root with ``images/val``), else the run's own dataset root if it is
still there, else a few val images synthesised into a temporary folder at start-up.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from findvl.images import read_image


@dataclass
class Examples:
    """``images``: ``(name, path, HxWx3 uint8)``; ``phrases``: referring phrases per image name."""

    images: list[tuple[str, Path, np.ndarray]] = field(default_factory=list)
    phrases: dict[str, list[str]] = field(default_factory=dict)

    @property
    def gallery(self) -> list[tuple[str, np.ndarray]]:
        return [(name, rgb) for name, _, rgb in self.images]


def _phrases(root: Path, split: str) -> dict[str, list[str]]:
    refs_path = root / "annotations" / f"refs_{split}.json"
    inst_path = root / "annotations" / f"instances_{split}.json"
    if not (refs_path.is_file() and inst_path.is_file()):
        return {}
    files = {im["id"]: im["file_name"] for im in json.loads(inst_path.read_text())["images"]}
    out: dict[str, list[str]] = {}
    for ref in json.loads(refs_path.read_text()):
        name = Path(files.get(ref["image_id"], "")).name
        if name and ref.get("sentences"):
            out.setdefault(name, []).append(ref["sentences"][0]["sent"])
    return out


def load_examples(root: Path | None, *, limit: int = 8, split: str = "val") -> Examples:
    """Up to ``limit`` val images (sorted by name) with their referring phrases."""
    if root is None or not (Path(root) / "images" / split).is_dir():
        return Examples()
    root = Path(root)
    paths = sorted((root / "images" / split).glob("*.png"))[:limit]
    images = [(p.name, p, read_image(p)) for p in paths]
    return Examples(images, _phrases(root, split))


def synthesise_examples(count: int = 6, size: int = 96, seed: int = 1) -> Examples:
    """A few synthetic val images in a fresh temporary folder (removed at exit)."""
    from findvl.data.synth.write import SynthConfig, write_synth

    folder = Path(tempfile.mkdtemp(prefix="findvl-demo-examples-"))
    atexit.register(shutil.rmtree, folder, True)
    config = SynthConfig(out=folder, images=count, seed=seed, size=size, split="val")
    write_synth(config, progress=False)
    return load_examples(folder, limit=count)
