"""Interleaved segmentation and interleaved retrieval on FIND-Bench entity captions.

Every entity caption of ``entity_{split}.json`` is one interleaved text: entities with a
reference become visual references (the referenced segment's full mask in the reference image)
with probability 0.5, drawn per entity from the seed (see
:func:`~findvl.evaluation.common.interleaved_query`); the others stay text. One forward per
round of captions does both tasks on the caption's image:

* segmentation: one mask per entity, scored with cIoU / mIoU / P@0.5 against its segment;
* retrieval: the caption is a query whose relevant gallery item is its image; gallery = every
  evaluated image. The official score ``cos(legend, image) + 0.5 · mean_e max_o cos(entity_e,
  object_o)`` uses the entity embeddings of the segmentation queries (they depend only on the
  query's tokens, not on the image) and the object-proposal embeddings of each gallery image;
  the query's reference images get the official 1e-6 penalty. The legend-only score
  (``cos(legend, image)``) is reported too.

The long-paragraph file ``entity_{split}_long.json`` is segmented zero-shot with every entity
as text (interleaved grounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from findvl.data.dataset import Sample
from findvl.eval.interleave import interleave_scores
from findvl.eval.retrieval import retrieval_metrics
from findvl.evaluation.common import (
    InterleavedQuery,
    SegmentMasks,
    interleaved_query,
    masks_on_original,
    rounds,
)
from findvl.evaluation.grounding import GroundingWriter
from findvl.model.requests import (
    Entity,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
)

#: Stands in for images without entity captions in a batch; its outputs are discarded.
PLACEHOLDER = InterleavedText("an object", [Entity(0, 9)])
ENTITY_WEIGHT = 0.5
REFERENCE_PENALTY = 1e-6


@dataclass
class RetrievalBank:
    """Embeddings gathered for interleaved retrieval (numpy, float32)."""

    gallery_ids: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)  # [P] each
    objects: list[np.ndarray] = field(default_factory=list)  # [N,P] each
    query_images: list[int] = field(default_factory=list)  # relevant image id per query
    legends: list[np.ndarray] = field(default_factory=list)  # [P] each
    entities: list[np.ndarray] = field(default_factory=list)  # [E,P] each
    references: list[list[int]] = field(default_factory=list)

    def scores(self, *, legend_only: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``scores[Q,G]`` and the relevant pairs ``(query_index[Q], gallery_index[Q])``."""
        position = {g: j for j, g in enumerate(self.gallery_ids)}
        q, g = len(self.legends), len(self.gallery_ids)
        width = max(1, max((e.shape[0] for e in self.entities), default=1))
        dim = self.images[0].shape[-1]
        entities = np.zeros((q, width, dim), np.float32)
        entity_mask = np.zeros((q, width), bool)
        if not legend_only:
            for i, e in enumerate(self.entities):
                entities[i, : e.shape[0]], entity_mask[i, : e.shape[0]] = e, True
        references = np.zeros((q, g), bool)
        for i, refs in enumerate(self.references):
            references[i, [position[r] for r in refs if r in position]] = True
        scores = interleave_scores(
            np.stack(self.legends),
            np.stack(self.images),
            entities,
            entity_mask,
            np.stack(self.objects),
            weight=ENTITY_WEIGHT,
            references=references,
            reference_penalty=0.0 if legend_only else REFERENCE_PENALTY,
        )
        gallery_index = np.array([position[i] for i in self.query_images], np.int64)
        return scores, np.arange(q), gallery_index

    def metrics(self, *, legend_only: bool) -> dict:
        if not self.legends:
            return {"IR@1": None, "IR@5": None, "IR@10": None, "num_queries": 0}
        scores, qi, gi = self.scores(legend_only=legend_only)
        result = retrieval_metrics(scores, qi, gi, text_retrieval=False)
        return {
            **result.recall,
            "num_queries": result.num_queries,
            "num_gallery": result.num_gallery,
        }


@dataclass
class InterleaveTask:
    """Interleaved segmentation + retrieval (``visual=False``: the text-only variant)."""

    seed: int
    by_id: dict[int, Sample]
    segments: SegmentMasks
    visual: bool = True
    long: bool = False
    writer: GroundingWriter = field(default_factory=lambda: GroundingWriter("interleave"))
    bank: RetrievalBank = field(default_factory=RetrievalBank)
    _count: int = 0

    def _queries(self, sample: Sample) -> list[InterleavedQuery]:
        captions = sample.entities_long if self.long else sample.entities
        out = []
        for caption in captions:
            if caption.spans:
                out.append(
                    interleaved_query(
                        caption,
                        self._count,
                        by_id=self.by_id,
                        segments=self.segments,
                        seed=self.seed,
                        visual=self.visual,
                    )
                )
            self._count += 1
        return out

    def update(self, model, features, batch: list[Sample], generator_for) -> None:
        """Run every entity caption of ``batch``, one per image per round."""
        queries = [self._queries(s) for s in batch]
        plan = rounds([len(q) for q in queries]) or [[None] * len(batch)]
        for r, picks in enumerate(plan):
            texts = [
                queries[b][k].text if k is not None else PLACEHOLDER for b, k in enumerate(picks)
            ]
            requests = [InterleaveSegmentation(texts)]
            if not self.long:
                requests.append(InterleaveRetrieval(texts))
            out = model(features, requests, generator=generator_for(r))
            if not self.long and r == 0:
                self._add_gallery(batch, out)
            self._add_round(batch, queries, picks, out)

    def _add_gallery(self, batch: list[Sample], out) -> None:
        final = out.interleave_retrieval
        for b, sample in enumerate(batch):
            self.bank.gallery_ids.append(sample.image_id)
            self.bank.images.append(final.final.image[b].float().cpu().numpy())
            self.bank.objects.append(final.objects[b].float().cpu().numpy())

    def _add_round(self, batch, queries, picks, out) -> None:
        seg = out.interleave_segmentation
        best = seg.best_masks()  # BxTxhxw
        for b, k in enumerate(picks):
            if k is None:
                continue
            query, sample = queries[b][k], batch[b]
            n = len(query.segment_ids)
            pred = masks_on_original(best[b, :n], out, b)
            masks = self.segments.of(sample.panoptic)
            for e, segment_id in enumerate(query.segment_ids):
                self.writer.add(sample.image_id, k * 1000 + e, masks[segment_id], pred[e])
            if not self.long:
                self.bank.query_images.append(sample.image_id)
                self.bank.legends.append(out.interleave_retrieval.final.query[b].cpu().numpy())
                self.bank.entities.append(seg.queries[b, :n].float().cpu().numpy())
                self.bank.references.append(query.reference_images)
