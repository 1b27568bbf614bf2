"""Shared by the criterion-equality tests: a find_tiny batch, and equal terms and gradients."""

from __future__ import annotations

from pathlib import Path

import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.config import train_config
from findvl.train.requests import build_requests
from findvl.train.trainer import Trainer


def tiny_batch(tmp_path: Path, loss: str) -> tuple[Trainer, list, list]:
    """A find_tiny trainer on 4 generated images with ``loss`` settings, its first batch and
    that batch's requests."""
    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=4, seed=0, size=64), progress=False)
    config = train_config(
        "find_tiny", [f'data.root="{data}"', f"loss={loss}"], steps=1, batch_size=4
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    examples = trainer.source.batch(0, 0, 0, 1)
    return trainer, examples, build_requests(examples, trainer.vocab.names)


def assert_same_terms_and_grads(ref, got, *, grad_rtol: float) -> None:
    """``ref`` and ``got`` are ``(terms, grads)``: every term (more than ten, the same names)
    within 1e-5 and every gradient within ``grad_rtol`` (absent in both or in neither)."""
    (ref_terms, ref_grads), (got_terms, got_grads) = ref, got
    assert len(ref_terms) > 10 and sorted(ref_terms) == sorted(got_terms)
    for name in ref_terms:
        torch.testing.assert_close(got_terms[name], ref_terms[name], atol=1e-5, rtol=1e-5, msg=name)
    for a, b in zip(got_grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=grad_rtol)
