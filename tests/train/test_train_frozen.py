"""Frozen encoders: bit-identical after training, absent from the optimizer."""

from __future__ import annotations

from pathlib import Path

import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.config import train_config
from findvl.train.trainer import Trainer


def test_frozen_encoders_do_not_change(tmp_path: Path) -> None:
    write_synth(SynthConfig(out=tmp_path / "data", images=4, seed=2, size=64), progress=False)
    config = train_config(
        "find_tiny",
        [
            f'data.root="{tmp_path / "data"}"',
            "model.vision.trainable=false",
            "model.language.trainable=false",
            "model.interface.num_layers=1",
            'loss={"num_points": 256}',
            "optim.lr=1e-3",
            "optim.clip_grad_norm=1.0",
        ],
        steps=2,
        batch_size=2,
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}

    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    for part in (model.vision, model.language):
        assert all(not p.requires_grad for p in part.parameters())
        assert not in_optimizer & {id(p) for p in part.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert in_optimizer == trainable

    trainer.train_step()
    trainer.train_step()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("vision.", "language."))]
    assert frozen
    for k in frozen:
        assert torch.equal(before[k], after[k]), f"frozen tensor {k} changed"
    learned = [n for n, p in model.named_parameters() if p.requires_grad]
    changed = [n for n in learned if not torch.equal(before[n], after[n])]
    assert any(n.startswith("interface.") for n in changed)
    assert any(n.startswith("pixel_decoder.") for n in changed)
    assert len(changed) > 0.9 * len(learned), sorted(set(learned) - set(changed))
