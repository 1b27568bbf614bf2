"""Referring segmentation (refs) and the shared writer of grounding-format files.

Each ref is evaluated with its **first** sentence (as the official evaluator does); all refs of
an image go in one forward (one per batch; batches whose phrases pad alike share forwards).
Ground truth and predictions are written as grounding JSON
(``{"image_id", "entity_id", "segmentation"}`` with COCO RLE) and scored by
:func:`findvl.metrics.grounding.evaluate_grounding`, so ``findvl eval grounding`` gives the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from findvl.data.readers.dataset import Sample
from findvl.evaluation.batching import Chunk, TokenCounts, Unit, run_units
from findvl.evaluation.common import SegmentMasks, generator, masks_on_original, things_of
from findvl.jsonio import atomic_write_json
from findvl.metrics.grounding import evaluate_grounding, evaluate_grounding_groups
from findvl.metrics.io import rle_to_json
from findvl.model.requests import GroundedSegmentation

#: Stands in for images without refs in a batch; its outputs are discarded.
PLACEHOLDER_PHRASE = "object"


@dataclass
class GroundingWriter:
    """Ground-truth and predicted masks of one grounding task, keyed (image_id, entity_id)."""

    name: str
    gt: list[dict] = field(default_factory=list)
    pred: list[dict] = field(default_factory=list)
    kinds: dict[tuple[int, int], str] = field(default_factory=dict)

    def add(
        self,
        image_id: int,
        entity_id: int,
        gt: np.ndarray,
        pred: np.ndarray,
        isthing: bool | None = None,
    ) -> None:
        """One entity: ``gt`` and ``pred`` are ``[H,W]`` bool masks on the original image;
        ``isthing``: whether its segment is a thing (scored apart from stuff too)."""
        if isthing is not None:
            self.kinds[(image_id, entity_id)] = "things" if isthing else "stuff"
        if gt.shape != pred.shape:
            raise ValueError(
                f"{self.name}: image {image_id}: mask sizes {gt.shape} != {pred.shape}"
            )
        self.gt.append(
            {"image_id": image_id, "entity_id": entity_id, "segmentation": rle_to_json(gt)}
        )
        self.pred.append(
            {"image_id": image_id, "entity_id": entity_id, "segmentation": rle_to_json(pred)}
        )

    def finish(self, root: Path) -> dict:
        """Write ``{name}_gt.json`` / ``{name}_pred.json`` and score them (percent)."""
        if not self.gt:
            return {"cIoU": None, "mIoU": None, "P@0.5": None, "num_entities": 0}
        gt_path, pred_path = root / f"{self.name}_gt.json", root / f"{self.name}_pred.json"
        atomic_write_json(gt_path, self.gt)
        atomic_write_json(pred_path, self.pred)
        scores = {"": evaluate_grounding(gt_path, pred_path)}
        if self.kinds:
            scores |= evaluate_grounding_groups(gt_path, pred_path, self.kinds)
        summary = {
            name: {
                "cIoU": result.cIoU,
                "mIoU": result.mIoU,
                "P@0.5": result.precision["P@0.5"],
                "num_entities": result.num_entities,
            }
            for name, result in scores.items()
        }
        return summary.pop("") | summary


def _image_refs(sample: Sample, segments: dict[int, np.ndarray]):
    """Refs of an image whose object is a segment of its panoptic annotation."""
    return [r for r in sample.refs if r.sentences and r.ann_id in segments]


def run_refs(
    model,
    chunk: Chunk,
    *,
    segments: SegmentMasks,
    writer: GroundingWriter,
    seed: int,
    tokens: TokenCounts,
) -> None:
    """Ground every ref of the chunk's images (first sentence each); add to ``writer``.

    One forward per batch in the plan; batches whose phrases pad alike share forwards.
    """
    pending = []
    for batch in chunk.batches:
        per_image = [segments.of(s.panoptic) for s in batch.samples]
        refs = [_image_refs(s, m) for s, m in zip(batch.samples, per_image, strict=True)]
        if any(refs):
            pending.append((batch, per_image, refs))
    tokens.prefetch(r.sentences[0].sent for *_, refs in pending for rs in refs for r in rs)
    units = []
    for batch, per_image, refs in pending:
        phrases = [
            [r.sentences[0].sent for r in image_refs] or [PLACEHOLDER_PHRASE] for image_refs in refs
        ]
        counts = [tokens(p) for p in phrases]
        # padded lengths: all phrases (language encoder), per image (tokens, targets)
        key = (max(map(max, counts)), max(map(sum, counts)), max(map(len, phrases)))
        rows = list(range(len(batch.samples)))
        gen = generator(seed, 1, batch.index, 0)
        units.append(Unit(batch, rows, phrases, key, gen, info=(per_image, refs)))
    for unit, preds in zip(units, run_units(model, chunk, units, _requests, _collect)):
        per_image, refs = unit.info
        for b, (sample, image_refs) in enumerate(zip(unit.batch.samples, refs, strict=True)):
            for t, ref in enumerate(image_refs):
                gt = per_image[b][ref.ann_id]
                isthing = things_of(sample.panoptic)[ref.ann_id]
                writer.add(sample.image_id, ref.ref_id, gt, preds[b][t], isthing)


def _requests(phrases: list[list[str]]) -> list[GroundedSegmentation]:
    return [GroundedSegmentation(phrases)]


def _collect(out, parts) -> list[list[np.ndarray | None]]:
    """Per unit, per image, ``[T,H,W]`` masks of its refs (None: the image has none)."""
    best = out.grounded_segmentation.best_masks()  # BxTxhxw
    preds = []
    for unit, offset in parts:
        _, refs = unit.info
        preds.append(
            [
                masks_on_original(best[offset + b, : len(r)], out, offset + b) if r else None
                for b, r in enumerate(refs)
            ]
        )
    return preds
