"""Generic segmentation with class names: panoptic PQ, instance AP, semantic mIoU.

Predictions are written in the standard formats (COCO panoptic JSON + PNGs, COCO results JSON,
label PNGs) together with ground truth derived from the panoptic annotation of the evaluated
images, then scored by :mod:`findvl.metrics`; ``findvl eval panoptic|instances|semantic`` on the
same files gives the same numbers. Instance ground truth = the non-crowd thing segments of the
panoptic annotation (crowd ones as ``iscrowd``), so ``--limit`` evaluates exactly the images run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from findvl.data.readers.dataset import Sample
from findvl.data.readers.vocabulary import Vocabulary
from findvl.evaluation.batching import Chunk, Unit, run_units
from findvl.evaluation.common import generator, output_dir
from findvl.jsonio import atomic_write_json
from findvl.metrics.instances import evaluate_instances
from findvl.metrics.io import rle_to_json
from findvl.metrics.panoptic import evaluate_panoptic
from findvl.metrics.semantic import evaluate_semantic
from findvl.model.requests import GenericSegmentation
from findvl.panoptic_ids import id2rgb
from findvl.postprocess import (
    OBJECT_THRESHOLD,
    instance_inference,
    panoptic_inference,
    semantic_inference,
)

IGNORE = 255  # semantic label of unlabeled pixels


@dataclass
class ImagePrediction:
    """Generic-segmentation results of one image, in class indices of the vocabulary.

    Attributes:
        panoptic: ``[H,W]`` int64 segment ids (0 = none).
        segments: per segment ``(id, class index)``.
        instance_masks: ``[M,H,W]`` bool; ``instance_labels`` / ``instance_scores``: ``[M]``.
        semantic: ``[H,W]`` class index per pixel (``IGNORE`` = none).
    """

    panoptic: np.ndarray
    segments: list[tuple[int, int]]
    instance_masks: np.ndarray
    instance_labels: np.ndarray
    instance_scores: np.ndarray
    semantic: np.ndarray


@dataclass
class GenericWriter:
    """Accumulates per-image predictions and ground truth in standard files under ``root``."""

    root: Path
    vocab: Vocabulary
    object_threshold: float = OBJECT_THRESHOLD  # of panoptic inference
    images: list[dict] = field(default_factory=list)
    gt_annotations: list[dict] = field(default_factory=list)
    pred_annotations: list[dict] = field(default_factory=list)
    instance_gt: list[dict] = field(default_factory=list)
    instance_pred: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("panoptic_pred", "semantic_gt", "semantic_pred"):
            output_dir(self.root / name)

    def add(self, sample: Sample, pred: ImagePrediction, segment_masks: np.ndarray) -> None:
        """Record one image: its prediction and its ground truth (``segment_masks [S,H,W]``)."""
        pan, name = sample.panoptic, f"{sample.image_id}.png"
        self.images.append(
            {
                "id": pan.image_id,
                "file_name": pan.file_name,
                "height": pan.height,
                "width": pan.width,
            }
        )
        self.gt_annotations.append(
            {
                "image_id": pan.image_id,
                "file_name": pan.segmentation_path.name,
                "segments_info": [
                    _segment_json(s.id, s.category_id, s.iscrowd, s.area, s.bbox)
                    for s in pan.segments
                ],
            }
        )
        self._add_prediction(sample, pred, name)
        self._add_semantic_gt(sample, segment_masks, name)
        for seg, mask in zip(pan.segments, segment_masks, strict=True):
            if seg.isthing:
                self.instance_gt.append(
                    {
                        "id": len(self.instance_gt) + 1,
                        "image_id": pan.image_id,
                        "category_id": seg.category_id,
                        "segmentation": rle_to_json(mask),
                        "area": int(mask.sum()),
                        "bbox": list(seg.bbox),
                        "iscrowd": int(seg.iscrowd),
                    }
                )

    def _add_prediction(self, sample: Sample, pred: ImagePrediction, name: str) -> None:
        cats = self.vocab.category_ids
        segments = [
            _segment_json(sid, cats[c], False, int((pred.panoptic == sid).sum()))
            for sid, c in pred.segments
            if cats[c] is not None
        ]
        kept = {s["id"] for s in segments}
        ids = np.where(np.isin(pred.panoptic, list(kept)), pred.panoptic, 0)
        Image.fromarray(id2rgb(ids)).save(self.root / "panoptic_pred" / name)
        self.pred_annotations.append(
            {"image_id": sample.image_id, "file_name": name, "segments_info": segments}
        )
        for mask, label, score in zip(
            pred.instance_masks, pred.instance_labels, pred.instance_scores, strict=True
        ):
            if cats[int(label)] is not None and self.vocab.isthing[int(label)]:
                self.instance_pred.append(
                    {
                        "image_id": sample.image_id,
                        "category_id": cats[int(label)],
                        "segmentation": rle_to_json(mask),
                        "score": float(score),
                    }
                )
        Image.fromarray(pred.semantic.astype(np.uint8)).save(self.root / "semantic_pred" / name)

    def _add_semantic_gt(self, sample: Sample, segment_masks: np.ndarray, name: str) -> None:
        class_of = self.vocab.index
        labels = np.full((sample.panoptic.height, sample.panoptic.width), IGNORE, np.uint8)
        for seg, mask in zip(sample.panoptic.segments, segment_masks, strict=True):
            if not seg.iscrowd and seg.category_id in class_of:
                labels[mask] = class_of[seg.category_id]
        Image.fromarray(labels).save(self.root / "semantic_gt" / name)

    def finish(self, categories: list[dict], panoptic_dir: Path) -> dict:
        """Write the JSON files and score them. Returns ``{panoptic, instance, semantic}``."""
        base = {"images": self.images, "categories": categories}
        atomic_write_json(
            self.root / "panoptic_gt.json", base | {"annotations": self.gt_annotations}
        )
        atomic_write_json(
            self.root / "panoptic_pred.json", base | {"annotations": self.pred_annotations}
        )
        atomic_write_json(self.root / "instances_gt.json", base | {"annotations": self.instance_gt})
        atomic_write_json(self.root / "instances_pred.json", self.instance_pred)
        pq = evaluate_panoptic(
            self.root / "panoptic_gt.json",
            panoptic_dir,
            self.root / "panoptic_pred.json",
            self.root / "panoptic_pred",
            progress=False,
        )
        ap = evaluate_instances(self.root / "instances_gt.json", self.root / "instances_pred.json")
        sem = evaluate_semantic(
            self.root / "semantic_gt",
            self.root / "semantic_pred",
            ignore=IGNORE,
            num_classes=len(self.vocab.names),
            progress=False,
        )
        panoptic = {"PQ": pq.All.PQ, "SQ": pq.All.SQ, "RQ": pq.All.RQ}
        panoptic |= {
            f"{k}_{part}": getattr(getattr(pq, part.capitalize()), k)
            for part in ("things", "stuff")
            for k in ("PQ", "SQ", "RQ")
        }
        instance = dict(vars(ap.segm)) if ap.segm is not None else {}
        return {
            "panoptic": panoptic,
            "instance": instance,
            "semantic": {"mIoU": sem.mIoU, "fwIoU": sem.fwIoU, "pACC": sem.pixel_accuracy},
        }


def _segment_json(sid, category_id, iscrowd, area, bbox=None) -> dict:
    record = {
        "id": int(sid),
        "category_id": int(category_id),
        "iscrowd": int(iscrowd),
        "area": int(area),
    }
    if bbox is not None:
        record["bbox"] = [float(v) for v in bbox]
    return record


def run_generic(model, chunk: Chunk, vocab: Vocabulary, writer: GenericWriter, seed: int) -> None:
    """Generic segmentation of every image of ``chunk`` (few shared forwards); add to ``writer``.

    Every image's forward is the same request, so the batches of a canvas size share forwards.
    """
    units = []
    for batch in chunk.batches:
        n = len(batch.samples)
        units.append(
            Unit(batch, list(range(n)), [None] * n, (), generator(seed, 0, batch.index, 0))
        )
    request = [GenericSegmentation(list(vocab.names))]

    def requests(_) -> list[GenericSegmentation]:
        return request

    def collect(out, parts) -> list[list[ImagePrediction]]:
        threshold = writer.object_threshold
        return [
            image_predictions(out, vocab, range(o, o + len(u.rows)), threshold) for u, o in parts
        ]

    for unit, preds in zip(units, run_units(model, chunk, units, requests, collect)):
        for sample, pred in zip(unit.batch.samples, preds, strict=True):
            writer.add(sample, pred, sample.panoptic.load_masks())


def image_predictions(
    out, vocab: Vocabulary, rows, object_threshold: float = OBJECT_THRESHOLD
) -> list[ImagePrediction]:
    """Per-image predictions of rows ``rows`` of a generic-segmentation output.

    Mask2Former post-processing on the original image size (panoptic inference keeps the
    proposals scoring above ``object_threshold``); instance results keep thing classes only (as
    FIND does when panoptic evaluation is on).
    """
    final = out.generic_segmentation.final
    preds = []
    for b in rows:
        masks = out.to_original(final.masks[b], b)
        pan = panoptic_inference(
            final.logits[b], masks, isthing=vocab.isthing, object_threshold=object_threshold
        )
        inst = instance_inference(final.logits[b], masks, keep_classes=vocab.isthing)
        sem = semantic_inference(final.logits[b], masks)
        semantic = sem.argmax(0) if sem.shape[0] else torch.full(masks.shape[1:], IGNORE)
        preds.append(
            ImagePrediction(
                panoptic=pan.segmentation.numpy(),
                segments=[(s["id"], s["category"]) for s in pan.segments],
                instance_masks=inst.masks.cpu().numpy(),
                instance_labels=inst.labels.cpu().numpy(),
                instance_scores=inst.scores.cpu().numpy(),
                semantic=semantic.cpu().numpy(),
            )
        )
    return preds


def perfect_prediction(sample: Sample, segment_masks: np.ndarray, vocab: Vocabulary):
    """The ground truth as an :class:`ImagePrediction` (sanity checks of the writers)."""
    class_of = vocab.index
    pan = sample.panoptic
    shape = (pan.height, pan.width)
    ids = np.zeros(shape, np.int64)
    semantic = np.full(shape, IGNORE, np.int64)
    segments, inst = [], []
    for seg, mask in zip(pan.segments, segment_masks, strict=True):
        if seg.iscrowd or seg.category_id not in class_of:
            continue
        ids[mask] = seg.id
        semantic[mask] = class_of[seg.category_id]
        segments.append((seg.id, class_of[seg.category_id]))
        if seg.isthing:
            inst.append((mask, class_of[seg.category_id]))
    return ImagePrediction(
        panoptic=ids,
        segments=segments,
        instance_masks=np.array([m for m, _ in inst], bool).reshape(-1, *shape),
        instance_labels=np.array([c for _, c in inst], np.int64),
        instance_scores=np.ones(len(inst)),
        semantic=semantic,
    )


def gt_panoptic_dir(samples: list[Sample]) -> Path:
    """The folder of ground-truth panoptic PNGs (shared by every sample of a split)."""
    return samples[0].panoptic.segmentation_path.parent
