"""Shared settings of the training tests that run ``findvl train`` in subprocesses."""

from __future__ import annotations

import pytest

# a 2-layer interface, few mask points, a log line every step, a checkpoint every 2 steps
TINY = [
    "--set", "model.interface.num_layers=2",
    "--set", 'loss={"num_points": 256}',
    "--set", "log_every=1",
    "--set", "checkpoint_every=2",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_train_flags() -> list[str]:
    """``--set`` flags of a tiny, fast ``findvl train`` run."""
    return list(TINY)
