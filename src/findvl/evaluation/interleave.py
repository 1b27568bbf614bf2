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

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from findvl.data.readers.dataset import Sample
from findvl.evaluation.batching import (
    Chunk,
    ImageCanvas,
    TokenCounts,
    Unit,
    batch_canvas,
    run_units,
)
from findvl.evaluation.common import (
    InterleavedQuery,
    SegmentMasks,
    generator,
    interleaved_query,
    masks_on_original,
    rounds,
    things_of,
)
from findvl.evaluation.grounding import GroundingWriter
from findvl.evaluation.prompts import predraw
from findvl.index import FindIndex, QueryEmbedding
from findvl.metrics.retrieval import retrieval_metrics
from findvl.model.requests import (
    Entity,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
)
from findvl.model.slots import splice_visual_entities

#: Stands in for images without entity captions in a batch; its outputs are discarded.
PLACEHOLDER = InterleavedText("an object", [Entity(0, 9)])


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
        """``scores[Q,G]`` and the relevant pairs ``(query_index[Q], gallery_index[Q])``.

        Computed through :class:`~findvl.index.FindIndex` over the gallery (its exact score
        matrix: the full rerank of every image)."""
        position = {g: j for j, g in enumerate(self.gallery_ids)}
        index = FindIndex.from_embeddings(
            self.gallery_ids, np.stack(self.images), np.stack(self.objects)
        )
        queries = [
            QueryEmbedding(legend, entities, reference_ids=[str(r) for r in refs])
            for legend, entities, refs in zip(self.legends, self.entities, self.references)
        ]
        scores = index.score_matrix(queries, legend_only=legend_only)
        gallery_index = np.array([position[i] for i in self.query_images], np.int64)
        return scores, np.arange(len(queries)), gallery_index

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
    task_key: int = 3
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

    def run(self, model, chunk: Chunk, tokens: TokenCounts, canvases: ImageCanvas) -> None:
        """Run every entity caption of ``chunk``, one per image per round of its batch."""
        rounds_ = []
        for batch in chunk.batches:
            queries = [self._queries(s) for s in batch.samples]
            plan = rounds([len(q) for q in queries]) or [[None] * len(batch.samples)]
            for r, picks in enumerate(plan):
                texts = [
                    queries[b][k].text if k is not None else PLACEHOLDER
                    for b, k in enumerate(picks)
                ]
                spliced = [splice_visual_entities(t, "texts")[0] for t in texts]
                captions = [(b, k, queries[b][k]) for b, k in enumerate(picks) if k is not None]
                rounds_.append((batch, r, texts, spliced, captions))
        tokens.prefetch(t for *_, spliced, _ in rounds_ for t in spliced)
        units = []
        for batch, r, texts, spliced, captions in rounds_:
            gen = generator(self.seed, self.task_key, batch.index, r)
            unit = _unit(batch, texts, gen, model, max(tokens(spliced)), canvases, not self.long)
            unit.info = (r, captions)
            units.append(unit)

        def collect(out, parts) -> list[_RoundResult]:
            best = out.interleave_segmentation.best_masks()  # BxTxhxw
            return [self._collect(out, best, u, o) for u, o in parts]

        for unit, got in zip(units, run_units(model, chunk, units, self._requests, collect)):
            self._add(unit.batch.samples, got)

    def _requests(self, payload: list[tuple[InterleavedText, InterleavedText]]) -> list:
        requests: list = [InterleaveSegmentation([seg for seg, _ in payload])]
        if not self.long:
            requests.append(InterleaveRetrieval([ret for _, ret in payload]))
        return requests

    def _collect(self, out, best: torch.Tensor, unit: Unit, offset: int) -> _RoundResult:
        """What a round needs from its rows ``offset...`` of a shared forward."""
        r, captions = unit.info
        got = _RoundResult()
        if not self.long and r == 0:
            final, rows = out.interleave_retrieval, slice(offset, offset + len(unit.rows))
            got.images = final.final.image[rows].float().cpu().numpy()
            got.objects = final.scored_objects()[rows].float().cpu().numpy()
        for b, k, query in captions:
            row, n = offset + b, len(query.segment_ids)
            caption = _CaptionResult(b, k, query, masks_on_original(best[row, :n], out, row))
            if not self.long:
                caption.legend = out.interleave_retrieval.final.query[row].cpu().numpy()
                queries = out.interleave_segmentation.queries
                caption.entities = queries[row, :n].float().cpu().numpy()
            got.captions.append(caption)
        return got

    def _add(self, samples: list[Sample], got: _RoundResult) -> None:
        if got.images is not None:
            self.bank.gallery_ids += [s.image_id for s in samples]
            self.bank.images += list(got.images)
            self.bank.objects += list(got.objects)
        for caption in got.captions:
            sample, query = samples[caption.row], caption.query
            masks = self.segments.of(sample.panoptic)
            for e, segment_id in enumerate(query.segment_ids):
                mask_id = caption.k * 1000 + e
                isthing = things_of(sample.panoptic)[segment_id]
                self.writer.add(
                    sample.image_id, mask_id, masks[segment_id], caption.pred[e], isthing
                )
            if caption.legend is not None:
                self.bank.query_images.append(sample.image_id)
                self.bank.legends.append(caption.legend)
                self.bank.entities.append(caption.entities)
                self.bank.references.append(query.reference_images)


@dataclass
class _CaptionResult:
    """One entity caption's outputs: entity masks ``pred [E,H,W]``; for retrieval the legend
    ``[P]`` and entity ``[E,P]`` embeddings."""

    row: int
    k: int
    query: InterleavedQuery
    pred: np.ndarray
    legend: np.ndarray | None = None
    entities: np.ndarray | None = None


@dataclass
class _RoundResult:
    """A round's outputs: gallery embeddings (first round of retrieval) and its captions."""

    images: np.ndarray | None = None  # [B,P]
    objects: np.ndarray | None = None  # [B,N,P]
    captions: list[_CaptionResult] = field(default_factory=list)


def _drawn_references(
    texts: list[InterleavedText], max_points: int, gen: torch.Generator
) -> tuple[list[InterleavedText], list[int]]:
    """References reduced to the points one request's forward draws; points per row.

    The model draws each visual reference's points in row order, then entity order.
    """
    refs = [
        (b, e, ent.reference)
        for b, text in enumerate(texts)
        for e, ent in enumerate(text.entities)
        if ent.reference is not None and ent.reference.image is not None
    ]
    if not refs:
        return texts, [0] * len(texts)
    drawn = predraw([ref.prompt for _, _, ref in refs], max_points=max_points, generator=gen)
    entities = [list(t.entities) for t in texts]
    points = [0] * len(texts)
    for (b, e, ref), d in zip(refs, drawn, strict=True):
        entities[b][e] = replace(entities[b][e], reference=replace(ref, prompt=d.prompt))
        points[b] += d.points
    return [replace(t, entities=ents) for t, ents in zip(texts, entities, strict=True)], points


def _unit(batch, texts, gen, model, length: int, canvases, retrieval: bool) -> Unit:
    """The forward of one round: references drawn for both requests, padded lengths as key.

    ``length``: token count of the round's longest text (visual entities spliced out).
    """
    seg, points = _drawn_references(texts, model.max_spatial_points, gen)
    ret = _drawn_references(texts, model.max_spatial_points, gen)[0] if retrieval else seg
    images = [
        canvases(ent.reference.image)
        for t in texts
        for ent in t.entities
        if ent.reference is not None and ent.reference.image is not None
    ]
    key = (
        length,
        max(len(t.entities) for t in texts),
        max(points),
        batch_canvas(images),
    )
    return Unit(batch, list(range(len(texts))), list(zip(seg, ret, strict=True)), key, gen)
