"""Shared pieces of model evaluation: settings, image loading, batching, seeded choices."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from findvl.data.readers.coco import PanopticImage
from findvl.data.readers.dataset import Sample
from findvl.data.readers.findbench import EntityCaption
from findvl.images import read_image_tensor
from findvl.model.requests import (
    Entity,
    InterleavedText,
    VisualPrompt,
    VisualReference,
)

#: Probability that an entity with a reference is given as a visual reference (FIND-Bench eval).
VISUAL_PROBABILITY = 0.5


def seed_for(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and integer ``keys`` (stable across runs)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def generator(seed: int, *keys: int) -> torch.Generator:
    """A torch generator seeded by :func:`seed_for` (prompt-point draws inside the model)."""
    return torch.Generator().manual_seed(seed_for(seed, *keys))


def load_image(sample: Sample) -> torch.Tensor:
    """``[3,H,W]`` uint8 RGB tensor of a sample's image."""
    path = sample.image_path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image (image_id {sample.image_id})")
    return read_image_tensor(path)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (None: as set), then restore.

    Small CPU forwards are dominated by thread synchronisation, which gets much slower when
    other processes share the cores; the thread count also changes float rounding, so runs
    are bitwise comparable only at equal thread counts.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be positive, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def batches(samples: Sequence[Sample], batch_size: int) -> Iterator[list[Sample]]:
    """Consecutive groups of ``batch_size`` samples."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(samples), batch_size):
        yield list(samples[start : start + batch_size])


def rounds(counts: Sequence[int]) -> list[list[int | None]]:
    """Round r holds, per image, the index r of its items (None when it has fewer).

    A forward takes one item per image; images with several items (captions, entity captions,
    interactive objects) take several rounds on the same encoded features.
    """
    return [[r if r < n else None for n in counts] for r in range(max(counts, default=0))]


def masks_on_original(masks: torch.Tensor, out, b: int) -> np.ndarray:
    """``[T,h,w]`` canvas logits of image ``b`` -> ``[T,H0,W0]`` bool masks (logit > 0)."""
    logits = out.to_original(masks, b)
    return (logits > 0).cpu().numpy()


class SegmentMasks:
    """Lazy per-image segment masks ``{segment id: [H,W] bool}`` (PNG decoded once per image)."""

    def __init__(self) -> None:
        self._cache: dict[int, dict[int, np.ndarray]] = {}

    def of(self, panoptic: PanopticImage) -> dict[int, np.ndarray]:
        if panoptic.image_id not in self._cache:
            masks = panoptic.load_masks()
            self._cache[panoptic.image_id] = {
                s.id: m for s, m in zip(panoptic.segments, masks, strict=True)
            }
        return self._cache[panoptic.image_id]


def things_of(panoptic: PanopticImage) -> dict[int, bool]:
    """``{segment id: isthing}`` of one image's panoptic annotation."""
    return {s.id: s.isthing for s in panoptic.segments}


@dataclass(frozen=True)
class InterleavedQuery:
    """An entity caption turned into a model input.

    Attributes:
        text: the interleaved text (visual entities carry their reference).
        segment_ids: per entity, the ground-truth segment id in the caption's image.
        reference_images: image ids whose regions stand in for visual entities.
    """

    text: InterleavedText
    segment_ids: list[int]
    reference_images: list[int]


def interleaved_query(
    caption: EntityCaption,
    index: int,
    *,
    by_id: dict[int, Sample],
    segments: SegmentMasks,
    seed: int,
    visual: bool = True,
) -> InterleavedQuery:
    """Entities with a reference become visual with probability 0.5, drawn per entity.

    The draw for entity ``j`` of caption ``index`` is seeded by ``(seed, index, j)``, so the
    same entities are visual in segmentation and retrieval and on every run. A reference whose
    image is not in the evaluated split stays text. ``visual=False`` keeps every entity as text.
    """
    entities, segment_ids, refs = [], [], []
    for j, span in enumerate(caption.spans):
        segment_ids.append(span.segment_id)
        ref = span.reference
        draw = np.random.default_rng(seed_for(seed, index, j)).random()
        if visual and ref is not None and ref.image_id in by_id and draw < VISUAL_PROBABILITY:
            ref_sample = by_id[ref.image_id]
            mask = segments.of(ref_sample.panoptic).get(ref.annotation_id)
            if mask is not None and mask.any():
                prompt = VisualPrompt(positive=torch.from_numpy(mask))
                reference = VisualReference(image=load_image(ref_sample), prompt=prompt)
                entities.append(Entity(span.start, span.end, reference))
                refs.append(ref.image_id)
                continue
        entities.append(Entity(span.start, span.end))
    return InterleavedQuery(InterleavedText(caption.sentence, entities), segment_ids, refs)


@dataclass(frozen=True)
class VisualQuery:
    """An entity caption with exactly one entity given as a visual reference.

    Attributes:
        text: the interleaved text; entity ``entity`` carries the reference, the others are text.
        entity: index of the visual entity in ``text.entities`` (and in the caption's spans).
        image_id: the referenced image.
        image: ``[3,H,W]`` uint8 pixels of the referenced image.
        mask: ``[H,W]`` bool, the referenced segment (never empty).
    """

    text: InterleavedText
    entity: int
    image_id: int
    image: torch.Tensor
    mask: np.ndarray


def visual_query(
    caption: EntityCaption, by_id: dict[int, Sample], segments: SegmentMasks
) -> VisualQuery | None:
    """The caption with its first usable reference as a visual entity (None: it has none).

    A reference is usable when its image is in ``by_id`` and its segment is not empty.
    """
    for j, span in enumerate(caption.spans):
        ref = span.reference
        if ref is None or ref.image_id not in by_id:
            continue
        mask = segments.of(by_id[ref.image_id].panoptic).get(ref.annotation_id)
        if mask is None or not mask.any():
            continue
        image = load_image(by_id[ref.image_id])
        visual = VisualReference(image, VisualPrompt(torch.from_numpy(mask)))
        entities = [
            Entity(s.start, s.end, visual if k == j else None) for k, s in enumerate(caption.spans)
        ]
        text = InterleavedText(caption.sentence, entities)
        return VisualQuery(text, j, ref.image_id, image, mask)
    return None


def output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
