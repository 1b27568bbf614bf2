"""A tiny synthetic val split and an untrained tiny model, shared by the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import torch

from findvl.build import build_model, find_tiny_config
from findvl.data.synth import SynthConfig, write_synth


def tiny_world(root: Path, images: int = 4) -> Path:
    write_synth(SynthConfig(out=root, images=images, seed=1, size=64, split="val"), progress=False)
    return root


def tiny_model():
    torch.manual_seed(0)
    return build_model(find_tiny_config()).eval()
