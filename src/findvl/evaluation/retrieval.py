"""Image-text retrieval: every caption of the split against every evaluated image.

The caption query attends only its own tokens (two-tower by the prototype masks), so caption
embeddings do not depend on the image they are paired with in a forward: images with several
captions take several rounds on the same encoded features, one caption per image per round, and
images with fewer captions get a placeholder whose output is discarded. The image embedding is
taken from the first round. Rounds whose captions pad to the same length share forwards.
Scores are cosine similarities; IR@K ranks images for each caption, TR@K ranks captions for each
image. ``scores.npz`` + ``retrieval_gt.json`` are written so
``findvl eval retrieval`` reproduces the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from findvl.evaluation.batching import Chunk, TokenCounts, Unit, run_units
from findvl.evaluation.common import generator, rounds
from findvl.index import FindIndex
from findvl.jsonio import atomic_write_json
from findvl.metrics.retrieval import evaluate_retrieval
from findvl.model.requests import ImageTextRetrieval

PLACEHOLDER_CAPTION = "a photo"


@dataclass
class RetrievalTask:
    """Caption and image embeddings gathered batch by batch."""

    image_ids: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)  # [P] each
    caption_images: list[int] = field(default_factory=list)  # image id of each caption
    captions: list[np.ndarray] = field(default_factory=list)  # [P] each

    def run(self, model, chunk: Chunk, seed: int, tokens: TokenCounts) -> None:
        """Embed every image and caption of ``chunk`` (rounds that pad alike share forwards)."""
        units = []
        tokens.prefetch(c for batch in chunk.batches for s in batch.samples for c in s.captions)
        for batch in chunk.batches:
            samples = batch.samples
            plan = rounds([len(s.captions) for s in samples]) or [[None] * len(samples)]
            for r, picks in enumerate(plan):
                texts = [
                    samples[b].captions[k] if k is not None else PLACEHOLDER_CAPTION
                    for b, k in enumerate(picks)
                ]
                gen = generator(seed, 2, batch.index, r)
                rows = list(range(len(samples)))
                units.append(Unit(batch, rows, texts, max(tokens(texts)), gen, info=(r, picks)))
        for unit, (images, captions) in zip(
            units, run_units(model, chunk, units, _requests, _collect), strict=True
        ):
            r, picks = unit.info
            samples = unit.batch.samples
            if r == 0:
                self.image_ids += [s.image_id for s in samples]
                self.images += list(images)
            for b, k in enumerate(picks):
                if k is not None:
                    self.caption_images.append(samples[b].image_id)
                    self.captions.append(captions[b])

    def finish(self, root: Path) -> dict:
        """Write ``retrieval_scores.npz`` / ``retrieval_gt.json``, score them (percent)."""
        if not self.captions:
            return {f"{d}@{k}": None for d in ("IR", "TR") for k in (1, 5, 10)}
        index = FindIndex.from_embeddings(self.image_ids, np.stack(self.images))
        scores = index.image_scores(np.stack(self.captions))  # float32 cosines
        query_ids = np.array([f"c{i}" for i in range(len(self.captions))])
        gallery_ids = np.array([str(i) for i in self.image_ids])
        scores_path, gt_path = root / "retrieval_scores.npz", root / "retrieval_gt.json"
        tmp = root / "retrieval_scores.tmp.npz"
        np.savez(tmp, scores=scores, query_ids=query_ids, gallery_ids=gallery_ids)
        tmp.replace(scores_path)
        atomic_write_json(
            gt_path, {q: [str(i)] for q, i in zip(query_ids.tolist(), self.caption_images)}
        )
        result = evaluate_retrieval(scores_path, gt_path)
        return {
            **result.recall,
            "num_captions": result.num_queries,
            "num_images": result.num_gallery,
        }


def _requests(texts: list[str]) -> list[ImageTextRetrieval]:
    return [ImageTextRetrieval(texts)]


def _collect(out, parts) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per unit, image and caption embeddings ``[B,P]`` of its rows."""
    final = out.image_text_retrieval.final
    image, query = final.image.float().cpu().numpy(), final.query.float().cpu().numpy()
    return [(image[o : o + len(u.rows)], query[o : o + len(u.rows)]) for u, o in parts]
