"""``deterministic=true``: two runs of one config give the same losses with several threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.quickstart import QUICKSTART_OVERRIDES
from findvl.train.config import train_config
from findvl.train.trainer import Trainer


@pytest.fixture
def deterministic_off():
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


def _losses(config, run: Path, steps: int) -> list[float]:
    trainer = Trainer(config, run, progress=False)
    return [trainer.train_step()["total"] for _ in range(steps)]


def test_the_flag_turns_on_deterministic_algorithms(tmp_path: Path, deterministic_off) -> None:
    write_synth(SynthConfig(out=tmp_path / "data", images=4, seed=2, size=64), progress=False)
    overrides = [f'data.root="{tmp_path / "data"}"', "model.interface.num_layers=1"]
    overrides += ['loss={"num_points": 64, "match_points": 64}', "deterministic=true"]
    config = train_config("find_tiny", overrides, steps=3, batch_size=2)
    torch.set_num_threads(2)
    first = _losses(config, tmp_path / "a", 3)
    assert torch.are_deterministic_algorithms_enabled()
    assert _losses(config, tmp_path / "b", 3) == first


@pytest.mark.slow  # two quickstart trainers, 8 steps each
def test_two_quickstart_runs_on_two_threads_are_identical(
    tmp_path: Path, deterministic_off
) -> None:
    """Without the flag two such runs differ from step 7 on (``benchmarks/determinism.py``)."""
    write_synth(SynthConfig(out=tmp_path / "data", images=64, seed=0, size=64), progress=False)
    overrides = [*QUICKSTART_OVERRIDES, f'data.root="{tmp_path / "data"}"', "data.workers=0"]
    config = train_config("find_synth", overrides, steps=10, batch_size=8)
    assert config.deterministic
    torch.set_num_threads(2)
    assert _losses(config, tmp_path / "a", 8) == _losses(config, tmp_path / "b", 8)
