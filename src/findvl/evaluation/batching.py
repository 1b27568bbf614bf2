"""Forwards over the rows of several encoded batches, with the numbers of one batch at a time.

Images are encoded in batches of ``batch_size`` (:class:`EncodedBatch`); a task describes the
forwards it would run on one batch at a time as :class:`Unit` s (a batch, a round, a click).
Units whose forwards have the same padded shapes (same ``key``: canvas, text length, number of
targets, number of prompt points...) run together in one forward over the concatenated rows
(:func:`run_units`): every row is computed as in its own unit's forward, so the results do not
change, and a few large forwards replace many small ones.

Padding does change the float rounding of a row (a longer masked sequence sums in another
order), so the key of a unit must hold every padded length of its forward; text lengths come
from :class:`TokenCounts`. The number of rows does not, except through matrix-product kernels
for very few rows (BLAS picks another kernel for a handful of rows, last-bit differences):
a batch of 8 and its shared forwards agree bit for bit, a last batch of 3 images may differ in
the last bit of an embedding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from findvl.data.readers.dataset import Sample
from findvl.encoders.preprocess import preprocess_images
from findvl.model.find import ImageFeatures
from findvl.model.outputs import FindOutput
from findvl.model.requests import Request


def _take(value: Any, index: torch.Tensor, rows: list[int]) -> Any:
    """Rows ``index`` of each per-image field of encoded images (tensors, lists, dataclasses)."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, index.to(value.device))
    if dataclasses.is_dataclass(value):
        return type(value)(
            **{
                f.name: _take(getattr(value, f.name), index, rows)
                for f in dataclasses.fields(value)
            }
        )
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
        return [_take(v, index, rows) for v in value]
    if isinstance(value, list):
        return [value[r] for r in rows]
    if isinstance(value, (int, float, str)):  # a setting shared by every image
        return value
    raise TypeError(f"cannot select rows of a {type(value).__name__}")


def _concat(values: list[Any]) -> Any:
    """Per-image fields of several encoder outputs side by side (the inverse of :func:`_take`)."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values)
    if dataclasses.is_dataclass(first):
        return type(first)(
            **{
                f.name: _concat([getattr(v, f.name) for v in values])
                for f in dataclasses.fields(first)
            }
        )
    if isinstance(first, list) and first and isinstance(first[0], torch.Tensor):
        return [_concat([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, list):
        return [x for v in values for x in v]
    if isinstance(first, (int, float, str)) and all(v == first for v in values):
        return first
    raise TypeError(f"cannot concatenate {type(first).__name__}")


def concat_features(parts: Sequence[ImageFeatures]) -> ImageFeatures:
    """Encoded batches of one canvas size -> one :class:`ImageFeatures` with all their rows."""
    return parts[0] if len(parts) == 1 else _concat(list(parts))


def select_features(features: ImageFeatures, rows: list[int]) -> ImageFeatures:
    """Rows ``rows`` (repeats allowed) of encoded images."""
    if rows == list(range(features.batch.pixels.shape[0])):
        return features
    return _take(features, torch.tensor(rows, dtype=torch.long), rows)


def canvas_of(features: ImageFeatures) -> tuple[int, int]:
    """Padded ``(H, W)`` of an encoded batch."""
    h, w = features.batch.pixels.shape[-2:]
    return int(h), int(w)


@dataclass
class EncodedBatch:
    """One batch of ``batch_size`` images, encoded together.

    Attributes:
        index: position of the batch in the split (seeds the batch's random choices).
        samples: its images.
        canvas: padded ``(H, W)`` of its features.
        first_row: row of its first image in the chunk's pool of that canvas.
    """

    index: int
    samples: list[Sample]
    canvas: tuple[int, int]
    first_row: int


@dataclass
class Chunk:
    """Consecutive encoded batches; their features concatenated per canvas size.

    Attributes:
        batches: in split order.
        pools: canvas ``(H, W)`` -> features of every image of that canvas.
        max_rows: per canvas, most rows in one forward.
    """

    batches: list[EncodedBatch]
    pools: dict[tuple[int, int], ImageFeatures]
    max_rows: dict[tuple[int, int], int]


def chunks(
    model,
    batches: Iterable[tuple[int, list[Sample]]],
    load: Callable[[Sample], torch.Tensor],
    forward_pixels: int,
) -> Iterator[Chunk]:
    """Encode each ``(index, samples)`` batch by itself (as one batch at a time would) and
    group consecutive batches until their features hold ``forward_pixels`` canvas pixels."""
    parts: dict[tuple[int, int], list[ImageFeatures]] = {}
    encoded: list[EncodedBatch] = []
    pixels = 0
    for index, samples in batches:
        features = model.encode_images([load(s) for s in samples])
        canvas = canvas_of(features)
        rows = sum(p.batch.pixels.shape[0] for p in parts.get(canvas, []))
        parts.setdefault(canvas, []).append(features)
        encoded.append(EncodedBatch(index, samples, canvas, rows))
        pixels += len(samples) * canvas[0] * canvas[1]
        if pixels >= forward_pixels:
            yield _chunk(encoded, parts, forward_pixels)
            parts, encoded, pixels = {}, [], 0
    if encoded:
        yield _chunk(encoded, parts, forward_pixels)


def _chunk(encoded, parts, forward_pixels: int) -> Chunk:
    pools = {c: concat_features(p) for c, p in parts.items()}
    max_rows = {c: max(1, forward_pixels // (c[0] * c[1])) for c in pools}
    return Chunk(encoded, pools, max_rows)


@dataclass
class Unit:
    """One forward of the one-batch-at-a-time plan (or the part of it whose rows matter).

    Attributes:
        batch: the encoded batch its images come from.
        rows: per row, the image's position in the batch (repeats allowed).
        payload: per row, what the task's request needs (a caption, a prompt...).
        key: everything that sets the padded shapes of the forward; units with equal keys
            (and canvas) may share a forward.
        generator: the generator of the unit's own forward; a shared forward gets its first
            unit's (prompt points are drawn beforehand, see
            :func:`findvl.evaluation.prompts.predraw`, so no row's draw depends on which rows
            share its forward).
        info: the task's own record of the unit (which captions, which round...).
    """

    batch: EncodedBatch
    rows: list[int]
    payload: list[Any]
    key: Hashable = ()
    generator: torch.Generator | None = None
    info: Any = None


@dataclass
class _Group:
    canvas: tuple[int, int]
    units: list[int] = field(default_factory=list)
    rows: int = 0


def plan(units: Sequence[Unit], max_rows: dict[tuple[int, int], int]) -> list[list[int]]:
    """Unit indices per shared forward: equal (canvas, key), at most ``max_rows`` rows each.

    A unit is never split; one larger than ``max_rows`` runs alone. Order is kept.
    """
    open_groups: dict[Hashable, _Group] = {}
    done: list[_Group] = []
    for i, unit in enumerate(units):
        canvas, n = unit.batch.canvas, len(unit.rows)
        key = (canvas, unit.key)
        group = open_groups.get(key)
        if group is not None and group.rows + n > max_rows[canvas]:
            done.append(open_groups.pop(key))
            group = None
        if group is None:
            group = open_groups[key] = _Group(canvas)
        group.units.append(i)
        group.rows += n
    done += open_groups.values()
    return sorted((g.units for g in done), key=lambda g: g[0])


#: ``collect(out, [(unit, offset), ...])``: one result per unit of a shared forward, whose row
#: ``b`` of a unit is row ``offset + b`` of ``out``.
Collect = Callable[[FindOutput, list[tuple[Unit, int]]], list[Any]]


def run_units(
    model,
    chunk: Chunk,
    units: Sequence[Unit],
    requests: Callable[[list[Any]], list[Request]],
    collect: Collect,
) -> list[Any]:
    """Run ``units`` in as few forwards as their keys allow.

    Args:
        requests: concatenated payloads of a forward's rows -> the forward's requests.
        collect: takes what each unit needs from a forward's output, right after the forward
            (one output is alive at a time).

    Returns:
        per unit, in order, what ``collect`` returned for it.
    """
    results: list[Any] = [None] * len(units)
    for group in plan(units, chunk.max_rows):
        members = [units[i] for i in group]
        canvas = members[0].batch.canvas
        rows = [u.batch.first_row + r for u in members for r in u.rows]
        payload = [p for u in members for p in u.payload]
        features = select_features(chunk.pools[canvas], rows)
        out = model(features, requests(payload), generator=members[0].generator)
        offsets = [0]
        for unit in members[:-1]:
            offsets.append(offsets[-1] + len(unit.rows))
        parts = list(zip(members, offsets, strict=True))
        for i, result in zip(group, collect(out, parts), strict=True):
            results[i] = result
    return results


class TokenCounts:
    """Token count of each text under the model's language encoder (memoised).

    A batch of texts is padded to its longest text, so the count of the longest text of a
    forward is part of the forward's key.
    """

    def __init__(self, model, chunk_size: int = 256) -> None:
        self.model, self.chunk_size = model, chunk_size
        self._counts: dict[str, int] = {}

    def prefetch(self, texts: Iterable[str]) -> None:
        """Count the texts not seen yet, ``chunk_size`` per encoder call."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._counts))
        for start in range(0, len(missing), self.chunk_size):
            part = missing[start : start + self.chunk_size]
            mask = self.model.language.encode(part).mask
            self._counts.update(zip(part, mask.sum(1).tolist(), strict=True))

    def __call__(self, texts: Sequence[str]) -> list[int]:
        self.prefetch(texts)
        return [self._counts[t] for t in texts]


class ImageCanvas:
    """Padded canvas ``(H, W)`` of an image preprocessed alone (memoised by image size)."""

    def __init__(self, model) -> None:
        self.norm = model.vision.norm
        self._canvas: dict[tuple[int, ...], tuple[int, int]] = {}

    def __call__(self, image: torch.Tensor) -> tuple[int, int]:
        size = tuple(image.shape)
        if size not in self._canvas:
            h, w = preprocess_images([image], self.norm).pixels.shape[-2:]
            self._canvas[size] = (int(h), int(w))
        return self._canvas[size]


def batch_canvas(canvases: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """Canvas of a batch of images from their own canvases (None for no image)."""
    if not canvases:
        return None
    return max(c[0] for c in canvases), max(c[1] for c in canvases)
