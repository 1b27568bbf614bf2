"""Overfitting a handful of images gives near-perfect scores on every task (slow).

The standard proof that a training pipeline has no bug: train the quickstart model on four
images and evaluate it on the same four with the full evaluator. Scores here say nothing about
generalisation (the quickstart's val numbers do); a pipeline bug (wrong targets, a detached
query, a mis-sized mask) keeps a task near chance even on its training images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.evaluation.runner import evaluate_run
from findvl.train.config import train_config
from findvl.train.trainer import Trainer

#: Measured on these four images after 300 steps (the value in the comment; 3 min on one
#: thread), with a margin.
FLOORS = {
    "panoptic.PQ": 90.0,  # 99.8
    "semantic.mIoU": 90.0,  # 99.8
    "grounding.cIoU": 90.0,  # 99.4
    "interactive.mIoU@1": 90.0,  # 99.6
    "retrieval.IR@1": 100.0,  # 100.0
    "retrieval.TR@1": 100.0,  # 100.0
    "interleave_segmentation.cIoU": 80.0,  # 90.4
}


def _get(metrics: dict, key: str) -> float:
    task, name = key.split(".", 1)
    return metrics[task][name]


@pytest.mark.slow
def test_four_images_are_learnt_on_every_task(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = tmp_path / "data"
    write_synth(
        SynthConfig(out=data, images=4, seed=3, size=64, split="val", holdout_combos=True),
        progress=False,
    )
    overrides = [
        f"data.root={json.dumps(str(data))}",
        'data.split="val"',
        "data.flip=false",
        "data.workers=0",
        'loss={"num_points": 256}',
        "optim.lr=1e-3",
        "optim.clip_grad_norm=1.0",
        "optim.warmup_steps=10",
        "match_every_layer=false",
        "checkpoint_every=1000",
        "log_every=50",
    ]
    config = train_config("find_synth_vit", overrides, steps=300, batch_size=4, seed=0)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    metrics = evaluate_run(
        trainer.model.eval(),
        trainer.vocab.names,
        trainer.vocab.isthing,
        data,
        "val",
        progress=False,
        threads=1,
    )
    scores = {k: round(_get(metrics, k), 1) for k in FLOORS}
    print(json.dumps(scores))
    assert all(scores[k] >= v for k, v in FLOORS.items()), scores
