"""Visual references: for each entity phrase, the most similar same-category segment elsewhere.

A :class:`SegmentEmbedder` maps an image and its segment masks to one vector per segment; the
reference of a phrase is the segment of another image, of the same category, whose embedding has
the highest cosine similarity with the phrase's segment (``prob`` = that similarity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from findvl.data.coco import PanopticImage, read_panoptic
from findvl.data.dataset import DatasetPaths
from findvl.data.findbench import EntityFile, EntityPhrase, Reference, read_entity, write_entity
from findvl.encoders.preprocess import preprocess_images
from findvl.encoders.vision import TinyBackbone, VisionEncoder


class SegmentEmbedder(Protocol):
    """``(image uint8 [3,H,W], masks bool [N,H,W]) -> [N,D] float`` embeddings."""

    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor: ...


class AppearanceEmbedder:
    """Hand-made appearance features: mean and std colour, sqrt of the area fraction, how much
    of its box the segment fills, and the box aspect ratio (D = 9). Deterministic, no weights."""

    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        pixels = image.numpy().reshape(3, -1).astype(np.float32) / 255.0  # 3xHxW -> 3xHW
        m = masks.numpy()
        weights = m.reshape(m.shape[0], -1).astype(np.float32)  # NxHxW -> NxHW
        area = np.maximum(weights.sum(1), 1.0)
        mean = weights @ pixels.T / area[:, None]  # Nx3
        std = np.sqrt(np.maximum(weights @ (pixels**2).T / area[:, None] - mean**2, 0.0))
        box_h = np.maximum(m.any(2).sum(1), 1)
        box_w = np.maximum(m.any(1).sum(1), 1)
        shape = np.stack(
            [np.sqrt(area / weights.shape[1]), area / (box_h * box_w), np.log(box_w / box_h)],
            axis=1,
        )
        return torch.from_numpy(np.concatenate([mean, std, shape], axis=1).astype(np.float32))


class VisionSegmentEmbedder:
    """Mean-pools one feature level of a :class:`VisionEncoder` under each mask.

    Masks are area-downsampled to the feature grid (a weighted average); a mask too small to
    leave any weight falls back to its max-pooled footprint.

    Args:
        encoder: the vision encoder (used in eval mode, without gradients).
        level: which output level to pool, e.g. "res3".
    """

    def __init__(self, *, encoder: VisionEncoder, level: str = "res3") -> None:
        names = [lv.name for lv in encoder.levels]
        if level not in names:
            raise ValueError(f"level: {level!r} is not one of the encoder's levels {names}")
        self.encoder = encoder.eval()
        self.level = level

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        batch = preprocess_images([image], self.encoder.norm)
        features = self.encoder.forward_features(batch.pixels)[self.level][0]  # CxhxW'
        (vh, vw), (ph, pw) = batch.sizes[0], batch.pixels.shape[-2:]
        m = F.interpolate(masks[:, None].float(), size=(vh, vw), mode="nearest")
        m = F.pad(m, (0, pw - vw, 0, ph - vh))  # Nx1xHxW, padded like the pixels
        grid = features.shape[-2:]
        weights = F.interpolate(m, size=grid, mode="area").flatten(1)  # Nxhw
        empty = weights.sum(1) <= 0
        if empty.any():
            weights[empty] = F.adaptive_max_pool2d(m[empty], grid).flatten(1)
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        return weights @ features.flatten(1).T  # Nxhw @ hwxC -> NxC


def tiny_vision_embedder(seed: int = 0) -> VisionSegmentEmbedder:
    """A :class:`VisionSegmentEmbedder` over a randomly initialised, seeded ``TinyBackbone``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TinyBackbone()
    return VisionSegmentEmbedder(encoder=encoder, level="res3")


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

    def nearest(self, image_id: int, segment_id: int) -> Reference | None:
        """The most similar segment of the same category in another image (None if none).

        Raises:
            ValueError: ``segment_id`` is not a segment of image ``image_id``.
        """
        row = self._row_of.get((image_id, segment_id))
        if row is None:
            raise ValueError(f"segment {segment_id} is not a segment of image {image_id}")
        candidates = self._rows_of_category[int(self.category_ids[row])]
        sims = self.embeddings[candidates] @ self.embeddings[row]
        sims[self.image_ids[candidates] == image_id] = -np.inf
        best = int(np.argmax(sims))
        if not np.isfinite(sims[best]):
            return None
        return Reference(
            int(self.image_ids[candidates[best]]),
            int(self.segment_ids[candidates[best]]),
            round(float(sims[best]), 6),  # as written to JSON
        )


def load_image(path: Path) -> torch.Tensor:
    """An image file -> ``[3,H,W]`` uint8 RGB tensor."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


def embed_segments(
    images: list[PanopticImage], embedder: SegmentEmbedder, *, progress: bool = True
) -> SegmentTable:
    """Embed every segment of every panoptic image."""
    image_ids, segment_ids, category_ids, rows = [], [], [], []
    for panoptic in tqdm(images, desc="embed segments", disable=not progress):
        if not panoptic.segments:
            continue
        masks = torch.from_numpy(panoptic.load_masks())
        rows.append(embedder(load_image(panoptic.image_path), masks).float().numpy())
        for s in panoptic.segments:
            image_ids.append(panoptic.image_id)
            segment_ids.append(s.id)
            category_ids.append(s.category_id)
    embeddings = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 1), np.float32)
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return SegmentTable(
        np.array(image_ids, dtype=np.int64),
        np.array(segment_ids, dtype=np.int64),
        np.array(category_ids, dtype=np.int64),
        embeddings,
    )


def add_references(entity: EntityFile, table: SegmentTable, *, where: str = "entity") -> EntityFile:
    """A copy of ``entity`` whose phrases carry their nearest visual reference."""
    spans = []
    for i, caption in enumerate(entity.captions):
        try:
            refs = [table.nearest(caption.image_id, s.segment_id) for s in caption.spans]
        except ValueError as error:
            raise ValueError(f"{where}: annotations[{i}]: {error}") from None
        spans.append(
            tuple(
                EntityPhrase(s.segment_id, s.phrase, s.start, s.end, s.raw_start, r)
                for s, r in zip(caption.spans, refs)
            )
        )
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
