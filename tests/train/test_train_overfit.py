"""The joint loop learns: losses of every task fall when a tiny synthetic set is overfit.

Settings that overfit quickly on CPU: AdamW at lr 1e-3, gradient clip 1.0 (the official 0.01
is tuned for a 100-proposal model at batch 64), no warm-up, no flips, and, as in the quickstart,
no choice CE for the initial predictions (``initial_choice`` 0): their scores are the same for
every prompt, so that share of a choice CE cannot fall below the spread of the matched slots
whatever the model learns (with it, interactive_ce fell to 0.511 of its start in 250 steps).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.config import train_config
from findvl.train.logging import read_jsonl
from findvl.train.trainer import Trainer

TASK_TERMS = (
    "class_ce", "mask_bce", "mask_dice",
    "grounding_ce", "grounding_bce", "grounding_dice",
    "interactive_ce", "interactive_bce", "interactive_dice",
    "interleave_ce", "interleave_bce", "interleave_dice",
    "retrieval", "interleave_itc",
)  # fmt: skip


def _train(tmp_path: Path, *, images: int, steps: int) -> list[dict]:
    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=images, seed=0, size=64), progress=False)
    overrides = [
        f'data.root="{data}"',
        "data.flip=false",
        "model.interface.num_layers=2",
        'loss={"num_points": 256, "match_points": 256, "retrieval_tokens": 0, "initial_choice": 0}',
        "optim.lr=1e-3",
        "optim.clip_grad_norm=1.0",
        "optim.warmup_steps=0",
        "log_every=1",
        f"checkpoint_every={steps}",
    ]
    config = train_config("find_tiny", overrides, steps=steps, batch_size=images, seed=0)
    Trainer(config, tmp_path / "run", progress=False).fit()
    records = read_jsonl(tmp_path / "run" / "train.jsonl")
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    return records


def _mean(records: list[dict], key: str) -> float:
    return sum(r[key] for r in records) / len(records)


@pytest.mark.slow  # end to end, over 10 s on 2 busy cores
def test_overfitting_two_images_lowers_the_loss(tmp_path: Path) -> None:
    records = _train(tmp_path, images=2, steps=40)
    assert set(TASK_TERMS) <= set(records[0])  # one forward, all six tasks
    assert "retrieval_tokens" not in records[0]  # weight 0: the term is not computed
    first, last = records[:5], records[-5:]
    assert _mean(last, "total") < 0.75 * _mean(first, "total")
    for key in ("mask_bce", "mask_dice", "grounding_bce", "interactive_bce", "interleave_bce"):
        assert _mean(last, key) < 0.8 * _mean(first, key), key


@pytest.mark.slow
def test_every_task_loss_halves(tmp_path: Path) -> None:
    records = _train(tmp_path, images=2, steps=250)
    first, last = records[:10], records[-10:]
    ratios = {k: _mean(last, k) / _mean(first, k) for k in TASK_TERMS + ("total",)}
    slow = {k: round(r, 3) for k, r in ratios.items() if r > 0.5}
    assert not slow, slow
