"""Training batches: deterministic per (step, micro-batch, rank), loaded ahead in workers.

The examples of a batch depend only on the seed and its position, so a resumed run reads the
same batches, and a ``torch.utils.data.DataLoader`` can decode and augment upcoming batches in
worker processes (with prefetch) while the model trains on the current one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from findvl.data.readers.dataset import Sample
from findvl.data.readers.vocabulary import Vocabulary
from findvl.data.training import ExampleConfig, TrainExample, make_example
from findvl.train.config import TrainConfig


class BatchSource:
    """Deterministic batches: the examples of (step, rank) depend on nothing else."""

    def __init__(self, samples: list[Sample], vocab: Vocabulary, config: TrainConfig) -> None:
        if not samples:
            raise ValueError(f"{config.data.root}: split {config.data.split!r} has no images")
        self.samples, self.vocab, self.config = samples, vocab, config
        d = config.data
        self.example_config = ExampleConfig(
            max_prompts=d.max_prompts,
            max_phrases=d.max_phrases,
            max_entities=d.max_entities,
            visual_prob=d.visual_prob,
            flip=d.flip,
            scale_range=(d.scale_min, d.scale_max),
        )
        self._perm: dict[int, np.ndarray] = {}

    def calibration_texts(self, limit: int = 1024) -> list[str]:
        """A fixed sample of the texts training reads: class names, then the captions,
        referring expressions and entity captions of the first images, up to ``limit``."""
        texts = list(self.vocab.names)
        for sample in self.samples:
            texts += sample.captions
            texts += [s.sent for r in sample.refs for s in r.sentences]
            texts += [e.sentence for e in sample.entities]
            if len(texts) >= limit:
                break
        return [t for t in texts if t.strip()][:limit]

    def _index(self, position: int) -> int:
        n = len(self.samples)
        epoch = position // n
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.config.seed, epoch]).permutation(n)}
        return int(self._perm[epoch][position % n])

    def batch(self, step: int, micro: int, rank: int, world: int) -> list[TrainExample]:
        b, acc = self.config.batch_size, self.config.optim.accumulation
        start = ((step * acc + micro) * world + rank) * b
        out = []
        for i in range(b):
            idx = self._index(start + i)
            rng = np.random.default_rng([self.config.seed, step, micro, rank, i])
            out.append(
                make_example(
                    self.samples[idx], self.vocab.index, self.vocab.names, rng, self.example_config
                )
            )
        return out


class _StepBatches(torch.utils.data.Dataset):
    """Item ``i`` = the micro-batch ``(i // accumulation, i % accumulation)`` of one rank."""

    def __init__(self, source: BatchSource, rank: int, world: int) -> None:
        self.source, self.rank, self.world = source, rank, world
        self.accumulation = source.config.optim.accumulation

    def __len__(self) -> int:
        return self.source.config.steps * self.accumulation

    def __getitem__(self, index: int) -> list[TrainExample]:
        step, micro = divmod(index, self.accumulation)
        return self.source.batch(step, micro, self.rank, self.world)


def batch_loader(
    source: BatchSource, *, start_step: int, rank: int, world: int
) -> Iterator[list[TrainExample]]:
    """Micro-batches from ``start_step`` to ``config.steps`` in order, identical to
    :meth:`BatchSource.batch`; ``data.workers > 0`` loads them in that many processes."""
    c = source.config
    dataset = _StepBatches(source, rank, world)
    order = range(start_step * c.optim.accumulation, c.steps * c.optim.accumulation)
    if c.data.workers <= 0:
        return (dataset[i] for i in order)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=order,
        num_workers=c.data.workers,
        prefetch_factor=c.data.prefetch,
        collate_fn=lambda batch: batch,
        pin_memory=c.device.startswith("cuda"),
    )
    return iter(loader)
