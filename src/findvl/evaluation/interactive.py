"""Interactive segmentation with simulated clicks: mIoU@1/3/5 and NoC@85/90.

Each object (a non-crowd panoptic segment; a seeded subset of ``objects_per_image`` per image
when given) is one session: the click simulator (:mod:`findvl.data.clicks`) puts the first
click at the object's centre, then each next click on the larger error region. Every round
passes all clicks so far as one prompt (positive disks, negative disks) and the previous
round's mask logits (spatial memory). A session stops when IoU reaches 0.9, when nothing is
left to correct, or after ``max_clicks`` clicks; its curve keeps the last IoU afterwards.
One object per image per round, so the batch's encoded features serve every session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from findvl.data.clicks import Click, clicks_to_masks, next_click
from findvl.data.dataset import Sample
from findvl.eval.interactive import interactive_metrics
from findvl.evaluation.common import SegmentMasks, rounds, seed_for
from findvl.model.requests import InteractiveSegmentation, VisualPrompt
from findvl.postprocess import to_original

STOP_IOU = 0.9


@dataclass
class Session:
    """One object being clicked: ground truth, clicks, previous logits and the IoU curve."""

    gt: np.ndarray
    clicks: list[Click] = field(default_factory=list)
    previous: torch.Tensor | None = None
    curve: list[float] = field(default_factory=list)
    done: bool = False

    def prompt(self) -> VisualPrompt:
        positive, negative = clicks_to_masks(self.clicks, self.gt.shape)
        neg = torch.from_numpy(negative) if negative.any() else None
        return VisualPrompt(positive=torch.from_numpy(positive), negative=neg)


def _iou(gt: np.ndarray, pred: np.ndarray) -> float:
    union = np.logical_or(gt, pred).sum()
    return float(np.logical_and(gt, pred).sum() / union) if union else 1.0


@dataclass
class InteractiveTask:
    """IoU-vs-click curves of every session."""

    seed: int
    objects_per_image: int | None
    max_clicks: int
    segments: SegmentMasks
    curves: list[list[float]] = field(default_factory=list)

    def _objects(self, sample: Sample) -> list[np.ndarray]:
        masks = self.segments.of(sample.panoptic)
        ids = [s.id for s in sample.panoptic.segments if not s.iscrowd and masks[s.id].any()]
        if self.objects_per_image is not None and len(ids) > self.objects_per_image:
            rng = np.random.default_rng(seed_for(self.seed, sample.image_id))
            ids = sorted(rng.choice(ids, self.objects_per_image, replace=False).tolist())
        return [masks[i] for i in ids]

    def update(self, model, features, batch: list[Sample], generator_for) -> None:
        objects = [self._objects(s) for s in batch]
        for r, picks in enumerate(rounds([len(o) for o in objects])):
            sessions = [
                Session(objects[b][k]) if k is not None else None for b, k in enumerate(picks)
            ]
            self._run_sessions(model, features, sessions, lambda c, r=r: generator_for(r * 100 + c))
            self.curves += [s.curve for s in sessions if s is not None]

    def _run_sessions(self, model, features, sessions: list[Session | None], generator_for):
        live = [s for s in sessions if s is not None]
        filler = live[0]
        for c in range(self.max_clicks):
            for s in live:
                if not s.done:
                    click = next_click(
                        s.gt, s.previous.numpy() > 0 if s.previous is not None else None
                    )
                    s.done = click is None
                    if click is not None:
                        s.clicks.append(click)
            if all(s.done for s in live):
                return
            rows = [s if s is not None and s.clicks else filler for s in sessions]
            previous = (
                None
                if c == 0
                else [
                    s.previous if s.previous is not None else torch.full(s.gt.shape, -10.0)
                    for s in rows
                ]
            )
            request = InteractiveSegmentation([[s.prompt()] for s in rows], previous=previous)
            out = model(features, [request], generator=generator_for(c))
            best = out.interactive_segmentation.best_masks()  # BxTxhxw
            for b, s in enumerate(sessions):
                if s is None or s.done:
                    continue
                logits = to_original(
                    best[b, :1],
                    input_size=out.input_sizes[b],
                    canvas=out.canvas,
                    original_size=out.original_sizes[b],
                )[0]
                s.previous = logits.float().cpu()
                s.curve.append(_iou(s.gt, s.previous.numpy() > 0))
                s.done = s.curve[-1] >= STOP_IOU

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
        return {**result.miou_at, **result.noc, "num_objects": result.num_samples}
