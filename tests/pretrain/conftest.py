"""Builders of the encoder-pretraining tests: a tiny config, a tiny split in memory, a tiny CLIP.

Every test here gets its own ``HF_HOME``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from findvl.pretrain.config import (
    ObjectiveConfig,
    OptimConfig,
    PretrainConfig,
    TextTowerConfig,
    VisionTowerConfig,
    clip_config,
)
from findvl.pretrain.data import ClassTable, PretrainData
from findvl.pretrain.model import build_dense_clip


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def _tiny_config() -> PretrainConfig:
    """Two-layer 32-wide towers on 32 px images, 60 steps."""
    return PretrainConfig(
        vision=VisionTowerConfig(
            kind="vit", image_size=32, patch_size=4, hidden_size=32, num_layers=2
        ),
        text=TextTowerConfig(hidden_size=32, num_layers=2),
        objective=ObjectiveConfig(projection_dim=16),
        optim=OptimConfig(batch_size=8, steps=60, eval_every=30, lr=3e-3, warmup=0.1),
    )


def _tiny_data(tokenizer, count: int = 12, seed: int = 0) -> PretrainData:
    """32 px images of 8x8 patches of three colours (the class), each with its own caption."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, 4, (count, 64), generator=g)
    counts = torch.nn.functional.one_hot(labels, 4).to(torch.int16) * 16
    colours = torch.nn.functional.one_hot(labels - 1, 3).float().mul(2).sub(1)  # Nx64x3
    pixels = colours.transpose(1, 2).reshape(count, 3, 8, 8).repeat_interleave(4, 2)
    pixels = pixels.repeat_interleave(4, 3) + 0.3 * torch.randn(count, 3, 32, 32, generator=g)
    words = ["red", "blue", "green", "white", "black", "orange"]
    captions = [f"a {words[i % 6]} {['ring', 'star', 'cross'][i // 6 % 3]} number {i}" for i in
                range(count)]  # fmt: skip
    tokens = tokenizer(captions, padding="longest", return_tensors="pt")
    return PretrainData(
        pixels=pixels,
        patch_counts=counts,
        caption_ids=tokens["input_ids"],
        caption_mask=tokens["attention_mask"].bool(),
        caption_image=torch.arange(count),
        classes=ClassTable(("void", "a", "b", "c"), (1, 2, 3), (False, True, True, False)),
        image_ids=list(range(count)),
    )


def _build_tiny(tokenizer, cfg: PretrainConfig | None = None):
    """A dense CLIP of ``cfg`` (default :func:`_tiny_config`) over ``tokenizer``'s vocabulary."""
    cfg = cfg or _tiny_config()
    config = clip_config(
        cfg, vocab_size=len(tokenizer), bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id
    )
    return build_dense_clip(config, num_classes=4, max_logit_scale=100.0)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config()``: a fresh tiny :class:`PretrainConfig`."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_data():
    """``tiny_data(tokenizer, count=12, seed=0)``: a tiny split in memory."""
    return _tiny_data


@pytest.fixture(scope="session")
def build_tiny():
    """``build_tiny(tokenizer, cfg=None)``: a tiny dense CLIP."""
    return _build_tiny
