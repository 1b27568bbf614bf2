"""Visual references: for each entity phrase, the most similar same-category segment elsewhere.

A :class:`SegmentEmbedder` maps an image and its segment masks to one vector per segment; the
reference of a phrase is the segment of another image, of the same category, whose embedding has
the highest cosine similarity with the phrase's segment (``prob`` = that similarity). This module
is numpy only; embedders built on a vision encoder live in
:mod:`findvl.data.engine.reference_vision`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from findvl.data.readers.coco import PanopticImage, read_panoptic
from findvl.data.readers.dataset import DatasetPaths
from findvl.data.readers.findbench import (
    EntityFile,
    EntityPhrase,
    Reference,
    read_entity,
    write_entity,
)
from findvl.images import read_image

# Similarities are computed for at most this many (query, candidate) pairs at a time.
_BLOCK_PAIRS = 1 << 22


class SegmentEmbedder(Protocol):
    """``(image uint8 [H,W,3], masks bool [N,H,W]) -> [N,D]`` float32 embeddings."""

    def __call__(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray: ...


class AppearanceEmbedder:
    """Hand-made appearance features: mean and std colour, sqrt of the area fraction, how much
    of its box the segment fills, and the box aspect ratio (D = 9). Deterministic, no weights."""

    def __call__(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        pixels = image.reshape(-1, 3).astype(np.float32) / 255.0  # HxWx3 -> HWx3
        weights = masks.reshape(masks.shape[0], -1).astype(np.float32)  # NxHxW -> NxHW
        area = np.maximum(weights.sum(1), 1.0)
        mean = weights @ pixels / area[:, None]  # Nx3
        std = np.sqrt(np.maximum(weights @ pixels**2 / area[:, None] - mean**2, 0.0))
        box_h = np.maximum(masks.any(2).sum(1), 1)
        box_w = np.maximum(masks.any(1).sum(1), 1)
        shape = np.stack(
            [np.sqrt(area / weights.shape[1]), area / (box_h * box_w), np.log(box_w / box_h)],
            axis=1,
        )
        return np.concatenate([mean, std, shape], axis=1).astype(np.float32)


@dataclass
class SegmentTable:
    """Embeddings of every segment of a split.

    Attributes:
        image_ids, segment_ids, category_ids: ``[M]`` int64.
        embeddings: ``[M,D]`` float32, L2-normalised rows.
    """

    image_ids: np.ndarray
    segment_ids: np.ndarray
    category_ids: np.ndarray
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        pairs = zip(self.image_ids.tolist(), self.segment_ids.tolist())
        self._row_of = {pair: row for row, pair in enumerate(pairs)}
        self._rows_of_category = {
            int(c): np.flatnonzero(self.category_ids == c) for c in np.unique(self.category_ids)
        }

    def __contains__(self, pair: tuple[int, int]) -> bool:
        """Whether ``(image_id, segment_id)`` is a segment of the table."""
        return pair in self._row_of

    def nearest(self, image_id: int, segment_id: int) -> Reference | None:
        """The most similar segment of the same category in another image (None if none).

        Raises:
            ValueError: ``segment_id`` is not a segment of image ``image_id``.
        """
        return self.nearest_many([(image_id, segment_id)])[0]

    def nearest_many(self, queries: list[tuple[int, int]]) -> list[Reference | None]:
        """:meth:`nearest` for many ``(image_id, segment_id)`` pairs, batched per category."""
        rows = []
        for image_id, segment_id in queries:
            row = self._row_of.get((image_id, segment_id))
            if row is None:
                raise ValueError(f"segment {segment_id} is not a segment of image {image_id}")
            rows.append(row)
        by_category: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            by_category[int(self.category_ids[row])].append(i)
        out: list[Reference | None] = [None] * len(rows)
        for category, positions in by_category.items():
            candidates = self._rows_of_category[category]
            step = max(1, _BLOCK_PAIRS // len(candidates))
            for start in range(0, len(positions), step):
                block = positions[start : start + step]
                query = np.array([rows[i] for i in block])
                sims = self.embeddings[query] @ self.embeddings[candidates].T  # QxC
                sims[self.image_ids[query][:, None] == self.image_ids[candidates][None]] = -np.inf
                best = sims.argmax(1)
                for i, b, sim in zip(block, best.tolist(), sims[np.arange(len(block)), best]):
                    if np.isfinite(sim):
                        match = candidates[b]
                        out[i] = Reference(
                            int(self.image_ids[match]),
                            int(self.segment_ids[match]),
                            round(float(sim), 6),  # as written to JSON
                        )
        return out


class SegmentTableBuilder:
    """Collects the segment embeddings of one image at a time into a :class:`SegmentTable`."""

    def __init__(self, embedder: SegmentEmbedder) -> None:
        self.embedder = embedder
        self._ids: list[tuple[int, int, int]] = []
        self._rows: list[np.ndarray] = []

    def add(
        self, image_id: int, image: np.ndarray, masks: np.ndarray, segments: list[tuple[int, int]]
    ) -> None:
        """Embed the segments of one image.

        Args:
            image: ``[H,W,3]`` uint8.
            masks: ``[N,H,W]`` bool, one per segment.
            segments: ``(segment_id, category_id)`` per mask.
        """
        if len(segments) != masks.shape[0]:
            raise ValueError(f"image {image_id}: {len(segments)} segments, {len(masks)} masks")
        if not segments:
            return
        self._rows.append(np.asarray(self.embedder(image, masks), dtype=np.float32))
        self._ids += [(image_id, s, c) for s, c in segments]

    def build(self) -> SegmentTable:
        ids = np.array(self._ids, dtype=np.int64).reshape(-1, 3)
        if self._rows:
            embeddings = np.concatenate(self._rows)
        else:
            embeddings = np.zeros((0, 1), np.float32)
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return SegmentTable(ids[:, 0], ids[:, 1], ids[:, 2], embeddings)


def embed_segments(
    images: list[PanopticImage], embedder: SegmentEmbedder, *, progress: bool = True
) -> SegmentTable:
    """Embed every segment of every panoptic image."""
    builder = SegmentTableBuilder(embedder)
    for panoptic in tqdm(images, desc="embed segments", disable=not progress):
        if panoptic.segments:
            builder.add(
                panoptic.image_id,
                read_image(panoptic.image_path),
                panoptic.load_masks(),
                [(s.id, s.category_id) for s in panoptic.segments],
            )
    return builder.build()


def add_references(entity: EntityFile, table: SegmentTable, *, where: str = "entity") -> EntityFile:
    """A copy of ``entity`` whose phrases carry their nearest visual reference."""
    for i, caption in enumerate(entity.captions):
        for span in caption.spans:
            if (caption.image_id, span.segment_id) not in table:
                raise ValueError(
                    f"{where}: annotations[{i}]: segment {span.segment_id} is not a segment of"
                    f" image {caption.image_id}"
                )
    found = iter(
        table.nearest_many([(c.image_id, s.segment_id) for c in entity.captions for s in c.spans])
    )
    spans = [
        tuple(
            EntityPhrase(s.segment_id, s.phrase, s.start, s.end, s.raw_start, next(found))
            for s in caption.spans
        )
        for caption in entity.captions
    ]
    return entity.with_spans(spans)


def reference_table(
    root: str | Path, split: str, embedder: SegmentEmbedder, *, progress: bool = True
) -> SegmentTable:
    """Embed every panoptic segment of a split (standard layout, see ``DatasetPaths``)."""
    paths = DatasetPaths.standard(root, split)
    panoptic, _ = read_panoptic(paths.panoptic_json, paths.panoptic_dir, paths.image_dir)
    return embed_segments(panoptic, embedder, progress=progress)


def write_references(
    root: str | Path,
    split: str,
    embedder: SegmentEmbedder,
    *,
    suffix: str = "",
    out: str | Path | None = None,
    table: SegmentTable | None = None,
    progress: bool = True,
) -> EntityFile:
    """Add references to ``annotations/entity_{split}{suffix}.json`` and write the result
    atomically to ``out`` (default: the entity file itself).

    Args:
        table: precomputed segment embeddings (computed with ``embedder`` when None).
    """
    entity_path = Path(root) / "annotations" / f"entity_{split}{suffix}.json"
    entity = read_entity(entity_path)
    if table is None:
        table = reference_table(root, split, embedder, progress=progress)
    result = add_references(entity, table, where=str(entity_path))
    write_entity(out or entity_path, result)
    return result
