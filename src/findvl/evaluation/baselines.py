"""Interleaved-retrieval baselines without the interface.

* ``text_only``: the interleaved retrieval of :mod:`findvl.evaluation.interleave` with every
  visual reference dropped (the phrase text kept), same official score (run by the runner as an
  :class:`~findvl.evaluation.interleave.InterleaveTask` with ``visual=False``).
* ``embedding_average`` (this module): frozen encoders only. Image = mean-pooled features of the
  vision encoder's coarsest map over the valid region; query = average of the sentence embedding
  (mean of the language encoder's token features) and, for each visual entity, the vision
  features mean-pooled inside the reference mask. The two encoders' spaces differ in width and
  were never aligned, so both are mapped to a common width ``min(C_vision, D_language)`` by fixed
  random orthogonal maps (seeded); the score is the cosine there. With unaligned encoders this
  is chance level by construction: the gap to it is what the interface learns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from findvl.data.readers.dataset import Sample
from findvl.encoders.preprocess import preprocess_images
from findvl.evaluation.batching import TokenCounts
from findvl.evaluation.common import SegmentMasks, interleaved_query, load_image, seed_for
from findvl.metrics.retrieval import retrieval_metrics


def _orthogonal(rows: int, cols: int, seed: int) -> torch.Tensor:
    """``[rows, cols]`` with orthonormal columns (``cols <= rows``), from a seeded QR."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q.float()


def _coarsest(feats: dict[str, torch.Tensor]) -> torch.Tensor:
    return min(feats.values(), key=lambda x: x.shape[-2] * x.shape[-1])


def _pool(fmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``fmap [C,h,w]``, ``mask [h,w]`` float weights -> ``[C]`` weighted mean."""
    weight = mask / mask.sum().clamp_min(1e-6)
    return (fmap * weight).flatten(1).sum(1)


@dataclass
class EmbeddingAverage:
    """Frozen-encoder embeddings of images and interleaved queries."""

    model: torch.nn.Module
    seed: int
    by_id: dict[int, Sample]
    segments: SegmentMasks
    images: list[np.ndarray] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    queries: list[np.ndarray] = field(default_factory=list)
    query_images: list[int] = field(default_factory=list)
    _count: int = 0
    _vision_dim: int = 0
    _maps: tuple[torch.Tensor, torch.Tensor] | None = None

    def _vision(self, pixels: torch.Tensor, canvas_masks: list[torch.Tensor]) -> torch.Tensor:
        """Mean-pooled coarsest vision features ``[B,C]`` inside per-image canvas masks."""
        fmap = _coarsest(self.model.vision.forward_features(pixels)).float()
        h, w = fmap.shape[-2:]
        out = []
        for b, mask in enumerate(canvas_masks):
            small = F.interpolate(mask[None, None].float(), size=(h, w), mode="area")[0, 0]
            out.append(_pool(fmap[b], small if small.sum() > 0 else torch.ones(h, w)))
        return torch.stack(out)

    def _project(self, vision: torch.Tensor | None, text: torch.Tensor | None):
        if self._maps is None:
            cv, dl = self._dims
            width = min(cv, dl)
            self._maps = (
                _orthogonal(cv, width, seed_for(self.seed, 1)),
                _orthogonal(dl, width, seed_for(self.seed, 2)),
            )
        pv, pl = self._maps
        v = None if vision is None else F.normalize(vision @ pv, dim=-1)
        t = None if text is None else F.normalize(text @ pl, dim=-1)
        return v, t

    def _prepare(self, images: list[torch.Tensor], masks: list[torch.Tensor] | None):
        """Pixels ``[B,3,H,W]`` of images batched together and their canvas masks ``[H,W]``."""
        batch = preprocess_images(images, self.model.vision.norm).to(self.model.device)
        canvas = []
        for b, (h, w) in enumerate(batch.sizes):
            m = torch.zeros(batch.pixels.shape[-2:])
            region = (
                torch.ones(h, w)
                if masks is None
                else F.interpolate(masks[b][None, None].float(), size=(h, w), mode="nearest")[0, 0]
            )
            m[:h, :w] = region
            canvas.append(m)
        return batch.pixels, canvas

    def _images(self, images: list[torch.Tensor], masks: list[torch.Tensor] | None):
        return self._vision(*self._prepare(images, masks))

    @property
    def _dims(self) -> tuple[int, int]:
        return self._vision_dim, self.model.language.dim

    def update(self, features, batch: list[Sample]) -> None:
        """Embed the batch's images and its entity captions (``features`` unused: frozen only)."""
        del features
        self.run([batch])

    def run(
        self,
        batches: list[list[Sample]],
        forward_pixels: int = 8 * 1024 * 1024,
        tokens: TokenCounts | None = None,
    ) -> None:
        """Embed the images and entity captions of consecutive batches.

        The images of a batch are encoded together, the references of each query together
        (as a query by itself would); queries whose inputs pad alike share encoder calls.
        """
        for batch in batches:
            vision = self._images([load_image(s) for s in batch], None)
            self._vision_dim = vision.shape[-1]
            v, _ = self._project(vision, None)
            self.images += list(v.cpu().numpy())
            self.image_ids += [s.image_id for s in batch]
        queries = []
        for sample in (s for batch in batches for s in batch):
            for caption in sample.entities:
                if caption.spans:
                    query = interleaved_query(
                        caption,
                        self._count,
                        by_id=self.by_id,
                        segments=self.segments,
                        seed=self.seed,
                    )
                    queries.append(query)
                    self.query_images.append(sample.image_id)
                self._count += 1
        sentences = self._sentences(
            [q.text.text for q in queries], tokens or TokenCounts(self.model)
        )
        references = self._references(queries, forward_pixels)
        for text, vision in zip(sentences, references, strict=True):
            parts = [self._project(None, text[None].cpu())[1][0]]
            if vision is not None:
                parts += list(self._project(vision.cpu(), None)[0])
            self.queries.append(F.normalize(torch.stack(parts).mean(0), dim=-1).numpy())

    def _sentences(
        self, texts: list[str], tokens: TokenCounts, chunk: int = 256
    ) -> list[torch.Tensor]:
        """Mean token feature ``[D]`` per text; texts of one token count share encoder calls
        (no padding, so each is encoded as by itself)."""
        out: list[torch.Tensor | None] = [None] * len(texts)
        counts = tokens(texts)
        by_count: dict[int, list[int]] = {}
        for i, n in enumerate(counts):
            by_count.setdefault(n, []).append(i)
        for group in by_count.values():
            for start in range(0, len(group), chunk):
                rows = group[start : start + chunk]
                tokens = self.model.language.encode([texts[i] for i in rows])
                for j, i in enumerate(rows):
                    mask = tokens.mask[j].float()
                    feats = tokens.features[j].float()
                    out[i] = (feats * mask[:, None]).sum(0) / mask.sum().clamp_min(1)
        return out  # type: ignore[return-value]

    def _references(self, queries, forward_pixels: int) -> list[torch.Tensor | None]:
        """Per query, pooled vision features ``[R,C]`` of its visual references (None: none).

        The references of a query form one padded batch; batches of one canvas size go
        through the encoder together, at most ``forward_pixels`` canvas pixels at a time.
        """
        prepared: list[tuple[torch.Tensor, list[torch.Tensor]] | None] = []
        for query in queries:
            refs = [e.reference for e in query.text.entities if e.reference is not None]
            images, masks = [r.image for r in refs], [r.prompt.positive for r in refs]
            prepared.append(self._prepare(images, masks) if refs else None)
        out: list[torch.Tensor | None] = [None] * len(queries)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prepared):
            if p is not None:
                groups.setdefault(tuple(p[0].shape[-2:]), []).append(i)
        for (h, w), members in groups.items():
            sizes = [prepared[i][0].shape[0] for i in members]
            for pack in _packs(sizes, max(1, forward_pixels // (h * w))):
                part = [members[k] for k in pack]
                pixels = torch.cat([prepared[i][0] for i in part])
                vision = self._vision(pixels, [m for i in part for m in prepared[i][1]])
                for i, rows in zip(part, vision.split([sizes[k] for k in pack]), strict=True):
                    out[i] = rows
        return out

    def metrics(self) -> dict:
        if not self.queries:
            return {"IR@1": None, "IR@5": None, "IR@10": None, "num_queries": 0}
        scores = np.stack(self.queries) @ np.stack(self.images).T
        position = {g: j for j, g in enumerate(self.image_ids)}
        gallery_index = np.array([position[i] for i in self.query_images], np.int64)
        result = retrieval_metrics(
            scores, np.arange(len(self.queries)), gallery_index, text_retrieval=False
        )
        return {**result.recall, "num_queries": result.num_queries}


def _packs(sizes: list[int], limit: int) -> list[list[int]]:
    """Consecutive items in packs of at most ``limit`` in total (an item is never split)."""
    packs: list[list[int]] = []
    total = 0
    for i, n in enumerate(sizes):
        if not packs or total + n > limit:
            packs.append([])
            total = 0
        packs[-1].append(i)
        total += n
    return packs
