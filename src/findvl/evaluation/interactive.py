"""Interactive segmentation with simulated clicks: mIoU@1/3/5 and NoC@85/90.

Each object (a non-crowd panoptic segment; a seeded subset of ``objects_per_image`` per image
when given) is one session: the click simulator (:mod:`findvl.data.clicks`) puts the first
click at the object's centre, then each next click on the larger error region. Every round
passes all clicks so far as one prompt (positive disks, negative disks) and the previous
round's mask logits (spatial memory). A session stops when IoU reaches 0.9, when nothing is
left to correct, or after ``max_clicks`` clicks; its curve keeps the last IoU afterwards.

The plan is that of one batch at a time: round ``r`` of a batch clicks the ``r``-th object of
each of its images, one forward per click with generator ``(seed, 6, batch, 100 r + click)``
(images without an ``r``-th object repeat the round's first session). Prompt points are drawn
for that plan (:func:`~findvl.evaluation.prompts.predraw`); then click ``c`` of every session
of the chunk that is still running shares forwards (:func:`~findvl.evaluation.batching.run_units`)
and finished sessions take no row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from findvl.data.clicks import clicks_to_masks, next_click
from findvl.data.readers.dataset import Sample
from findvl.evaluation.batching import Chunk, EncodedBatch, Unit, run_units
from findvl.evaluation.common import SegmentMasks, generator, rounds, seed_for, things_of
from findvl.evaluation.prompts import DrawnPrompt, predraw
from findvl.metrics.interactive import interactive_metrics
from findvl.model.requests import InteractiveSegmentation, VisualPrompt

STOP_IOU = 0.9
TASK_KEY = 6  # generator key of the task (see the runner)


def _iou(gt: np.ndarray, pred: np.ndarray) -> float:
    union = np.logical_or(gt, pred).sum()
    return float(np.logical_and(gt, pred).sum() / union) if union else 1.0


@dataclass
class Session:
    """One object being clicked: ground truth, clicks as disks, previous logits, IoU curve."""

    gt: np.ndarray
    positive: np.ndarray = field(init=False)
    negative: np.ndarray = field(init=False)
    clicks: int = 0
    previous: torch.Tensor | None = None
    curve: list[float] = field(default_factory=list)
    done: bool = False

    def __post_init__(self) -> None:
        self.positive = np.zeros(self.gt.shape, bool)
        self.negative = np.zeros(self.gt.shape, bool)

    def click(self) -> None:
        """Add the next corrective click; done when nothing is left to correct."""
        pred = self.previous.numpy() > 0 if self.previous is not None else None
        click = next_click(self.gt, pred)
        self.done = click is None
        if click is not None:
            positive, negative = clicks_to_masks([click], self.gt.shape)
            self.positive |= positive
            self.negative |= negative
            self.clicks += 1

    def prompt(self) -> VisualPrompt:
        neg = torch.from_numpy(self.negative.copy()) if self.negative.any() else None
        return VisualPrompt(positive=torch.from_numpy(self.positive.copy()), negative=neg)

    def memory(self) -> torch.Tensor:
        """The previous logits (``-10`` everywhere before the first answer)."""
        return self.previous if self.previous is not None else torch.full(self.gt.shape, -10.0)

    def record(self, logits: torch.Tensor) -> None:
        self.previous = logits
        self.curve.append(_iou(self.gt, logits.numpy() > 0))
        self.done = self.curve[-1] >= STOP_IOU


@dataclass
class _Row:
    """A row of a shared forward: a session to update (None: a row kept for padding only)."""

    session: Session | None
    drawn: DrawnPrompt
    memory: torch.Tensor | None


@dataclass
class _Round:
    """Round ``r`` of a batch: one session per image (None: the image has no r-th object);
    ``things``: per session that exists, whether its object is a thing."""

    batch: EncodedBatch
    r: int
    sessions: list[Session | None]
    things: list[bool]
    finished: bool = False

    def _memory(self, b: int, c: int) -> torch.Tensor | None:
        return self.sessions[b].memory() if c > 0 else None

    def unit(self, c: int, seed: int, max_points: int) -> Unit | None:
        """Click ``c`` of the round's running sessions as a unit (None: all are done)."""
        live = [s for s in self.sessions if s is not None]
        for s in live:
            if not s.done:
                s.click()
        if all(s.done for s in live):
            self.finished = True
            return None
        # the one-batch forward: sessions without clicks (and missing ones) repeat the first
        first = next(b for b, s in enumerate(self.sessions) if s is not None)
        source = [b if s is not None and s.clicks else first for b, s in enumerate(self.sessions)]
        gen = generator(seed, TASK_KEY, self.batch.index, self.r * 100 + c)
        prompts = [self.sessions[b].prompt() for b in source]
        drawn = predraw(prompts, max_points=max_points, generator=gen)
        length = max(1, max(d.points for d in drawn))
        rows = [b for b, s in enumerate(self.sessions) if s is not None and not s.done]
        payload = [_Row(self.sessions[b], drawn[b], self._memory(b, c)) for b in rows]
        images = list(rows)
        if max(drawn[b].points for b in rows) < length:  # a row that keeps the padded length
            j = next(j for j, d in enumerate(drawn) if d.points == length)
            payload.append(_Row(None, drawn[j], self._memory(source[j], c)))
            images.append(source[j])
        return Unit(self.batch, images, payload, key=(c > 0, length), generator=gen)


def _requests(payload: list[_Row]) -> list[InteractiveSegmentation]:
    memory = [p.memory for p in payload]
    previous = None if memory[0] is None else memory
    return [InteractiveSegmentation([[p.drawn.prompt] for p in payload], previous=previous)]


@dataclass
class InteractiveTask:
    """IoU-vs-click curves of every session."""

    seed: int
    objects_per_image: int | None
    max_clicks: int
    segments: SegmentMasks
    curves: list[list[float]] = field(default_factory=list)
    things: list[bool] = field(default_factory=list)  # per curve: whether it is a thing's

    def _ids(self, sample: Sample) -> list[int]:
        """Segment ids of the image's objects to click (a seeded subset when capped)."""
        masks = self.segments.of(sample.panoptic)
        ids = [s.id for s in sample.panoptic.segments if not s.iscrowd and masks[s.id].any()]
        if self.objects_per_image is not None and len(ids) > self.objects_per_image:
            rng = np.random.default_rng(seed_for(self.seed, sample.image_id))
            ids = sorted(rng.choice(ids, self.objects_per_image, replace=False).tolist())
        return ids

    def _objects(self, sample: Sample) -> list[np.ndarray]:
        masks = self.segments.of(sample.panoptic)
        return [masks[i] for i in self._ids(sample)]

    def _things(self, sample: Sample) -> list[bool]:
        isthing = things_of(sample.panoptic)
        return [isthing[i] for i in self._ids(sample)]

    def run(self, model, chunk: Chunk) -> None:
        """Every session of the chunk's images, click by click."""
        plan: list[_Round] = []
        for batch in chunk.batches:
            objects = [self._objects(s) for s in batch.samples]
            things = [self._things(s) for s in batch.samples]
            for r, picks in enumerate(rounds([len(o) for o in objects])):
                sessions = [
                    Session(objects[b][k]) if k is not None else None for b, k in enumerate(picks)
                ]
                kinds = [things[b][k] for b, k in enumerate(picks) if k is not None]
                plan.append(_Round(batch, r, sessions, kinds))
        for c in range(self.max_clicks):
            units = [
                u
                for rnd in plan
                if not rnd.finished
                and (u := rnd.unit(c, self.seed, model.max_spatial_points)) is not None
            ]
            if not units:
                break
            run_units(model, chunk, units, _requests, _record)
        for rnd in plan:
            self.curves += [s.curve for s in rnd.sessions if s is not None]
            self.things += rnd.things

    def finish(self) -> dict:
        if not self.curves:
            return {
                "mIoU@1": None,
                "mIoU@3": None,
                "mIoU@5": None,
                "NoC@85": None,
                "NoC@90": None,
                "num_objects": 0,
            }
        clicks = tuple(k for k in (1, 3, 5) if k <= self.max_clicks)
        result = interactive_metrics(self.curves, clicks=clicks, max_clicks=self.max_clicks)
        summary = {**result.miou_at, **result.noc, "num_objects": result.num_samples}
        for name, want in (("things", True), ("stuff", False)):
            curves = [c for c, t in zip(self.curves, self.things, strict=True) if t == want]
            if curves:
                part = interactive_metrics(curves, clicks=clicks, max_clicks=self.max_clicks)
                summary[name] = {**part.miou_at, "num_objects": part.num_samples}
        return summary


def _record(out, parts) -> list[None]:
    """Give each session of a shared forward its row's mask."""
    best = out.interactive_segmentation.best_masks()  # BxTxhxw
    for unit, offset in parts:
        for j, row in enumerate(unit.payload):
            if row.session is None:
                continue
            b = offset + j
            logits = out.to_original(best[b, :1], b)[0]
            row.session.record(logits.float().cpu())
    return [None] * len(parts)
