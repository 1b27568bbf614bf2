"""Slot builders shared by the task modules (:mod:`findvl.model.tasks`): typed request parts
-> interface slots. The interface's own embeddings come from its methods."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from findvl.encoders.language import entity_token_map
from findvl.encoders.preprocess import ImageBatch
from findvl.model.interface import FindInterface
from findvl.model.requests import InterleavedText
from findvl.model.sequence_types import PointSampling, ProjectedText, SlotInput, SpatialSource

__all__ = [
    "INTERACTIVE_TOKEN",
    "ProjectedText",
    "SpatialSource",
    "interleave_text_slot",
    "memory_slot",
    "previous_masks",
    "proposal_slot",
    "query_slot",
    "reference_slot",
    "splice_visual_entities",
    "text_slot",
]

#: Text that stands in for an entity given as a visual reference (as in FIND-Bench training).
INTERACTIVE_TOKEN = "[INTERACTIVE]"


def _pad_rows(rows: list[torch.Tensor], fill: float | int | bool) -> torch.Tensor:
    """Stack ``[n_i, ...]`` tensors into ``[B, max n_i, ...]``."""
    n = max(1, max(r.shape[0] for r in rows))
    out = rows[0].new_full((len(rows), n, *rows[0].shape[1:]), fill)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


def proposal_slot(interface: FindInterface, key: str, batch: int) -> SlotInput:
    x, pos = interface.proposals(batch)
    valid = torch.ones(batch, x.shape[1], dtype=torch.bool, device=x.device)
    return SlotInput(key, "proposal", x, pos, valid)


def query_slot(interface: FindInterface, key: str, counts: list[int]) -> SlotInput:
    """``counts[b]`` copies of the image query for image b, with ids ``0..counts[b]-1``."""
    n = max(1, max(counts))
    x, pos = interface.queries(len(counts), n)
    arange = torch.arange(n, device=x.device)
    valid = arange[None] < torch.tensor(counts, device=x.device)[:, None]
    ids = torch.where(valid, arange[None].expand(len(counts), -1), -1)
    return SlotInput(key, "query", x, pos, valid, ids)


def memory_slot(interface: FindInterface, key: str, batch: int) -> SlotInput:
    x, pos = interface.memories(batch)
    valid = torch.ones(batch, x.shape[1], dtype=torch.bool, device=x.device)
    return SlotInput(key, "memory", x, pos, valid)


def text_slot(key: str, text: ProjectedText, groups: list[list[int]]) -> SlotInput:
    """Concatenate the tokens of texts ``groups[b]`` for image b; ids = position in the group."""
    feats, ids, codes = [], [], []
    for rows in groups:
        f = [text.features[t][text.mask[t]] for t in rows]
        feats.append(torch.cat(f) if f else text.features.new_zeros(0, text.features.shape[-1]))
        if text.positions is not None:
            p = [text.positions[t][text.mask[t]] for t in rows]
            codes.append(torch.cat(p) if p else feats[-1])
        ids.append(
            torch.cat([torch.full((len(x),), j, dtype=torch.long) for j, x in enumerate(f)])
            if f
            else torch.zeros(0, dtype=torch.long)
        )
    x = _pad_rows(feats, 0.0)
    id_rows = _pad_rows([i.to(x.device) for i in ids], -1)
    valid = id_rows >= 0
    pos = x.detach() if not codes else x.detach() + _pad_rows(codes, 0.0)
    return SlotInput(key, "token", x, pos, valid, id_rows)


def splice_visual_entities(item: InterleavedText, field: str) -> tuple[str, list[tuple[int, int]]]:
    """Replace visual entities by :data:`INTERACTIVE_TOKEN`; return the text and all spans.

    Every entity is handled, in order; offsets of later entities shift accordingly.
    """
    text = item.text
    if not text.strip():
        raise ValueError(f"{field}.text: empty text")
    order = sorted(range(len(item.entities)), key=lambda e: item.entities[e].start)
    spans: list[tuple[int, int]] = [(0, 0)] * len(item.entities)
    pieces, cursor, shift = [], 0, 0
    for e in order:
        ent = item.entities[e]
        if not (0 <= ent.start < ent.end <= len(text)):
            raise ValueError(
                f"{field}.entities[{e}]: span ({ent.start}, {ent.end}) is outside the text"
            )
        if ent.start < cursor:
            raise ValueError(
                f"{field}.entities[{e}]: span ({ent.start}, {ent.end}) overlaps another"
            )
        pieces.append(text[cursor : ent.start])
        phrase = INTERACTIVE_TOKEN if ent.reference is not None else text[ent.start : ent.end]
        start = ent.start + shift
        spans[e] = (start, start + len(phrase))
        pieces.append(phrase)
        shift += len(phrase) - (ent.end - ent.start)
        cursor = ent.end
    pieces.append(text[cursor:])
    return "".join(pieces), spans


def interleave_text_slot(
    interface: FindInterface,
    key: str,
    text: ProjectedText,
    spans: list[list[tuple[int, int]]],
    visual: list[list[bool]],
) -> SlotInput:
    """Tokens of one interleaved text per image; ids = entity of each token (-1 if none).

    Tokens of visual entities also carry the image query's content and position (so the
    placeholder text is read as "a region goes here").
    """
    b, length = text.mask.shape
    ids = torch.full((b, length), -1, dtype=torch.long, device=text.mask.device)
    is_visual_token = torch.zeros(b, length, dtype=torch.bool, device=text.mask.device)
    for i in range(b):
        if spans[i]:
            member = entity_token_map(text.offsets[i], spans[i]) & text.mask[i]  # ExL
            for e in range(member.shape[0]):
                ids[i][member[e]] = e
                if visual[i][e]:
                    is_visual_token[i] |= member[e]
    x, pos = interface.mark_visual_tokens(text.features, is_visual_token)
    return SlotInput(key, "token", x, pos, text.mask, ids)


def reference_slot(
    interface: FindInterface,
    key: str,
    items: list[InterleavedText],
    resolve: Callable[[int, int], tuple[SpatialSource, int]],
    *,
    sampling: PointSampling,
    generator: torch.Generator | None,
    field: str,
) -> SlotInput | None:
    """Spatial tokens of every visual reference; ids = entity index in its text.

    ``resolve(b, e)`` gives the source (maps of the image holding the reference) and the row
    of that image in the source.
    """
    per_image: list[list[SlotInput]] = []
    for b, item in enumerate(items):
        rows = []
        for e, ent in enumerate(item.entities):
            if ent.reference is None:
                continue
            source, row = resolve(b, e)
            s = interface.spatial_tokens(
                key,
                source.row(row),
                [[ent.reference.prompt]],
                sampling=sampling,
                generator=generator,
                field=f"{field}[{b}].entities[{e}].reference.prompt",
            )
            s.ids = torch.full_like(s.ids, e)
            rows.append(s)
        per_image.append(rows)
    if not any(per_image):
        return None
    levels = []
    d = interface.hidden_dim
    device = next(r.ids.device for rows in per_image for r in rows)
    for lvl in range(interface.num_levels):
        levels.append(
            _pad_rows(
                [
                    torch.cat([r.levels[lvl][0] for r in rows])
                    if rows
                    else torch.zeros(0, d, device=device)
                    for rows in per_image
                ],
                0.0,
            )
        )
    ids = _pad_rows(
        [
            torch.cat([r.ids[0] for r in rows])
            if rows
            else torch.zeros(0, dtype=torch.long, device=device)
            for rows in per_image
        ],
        -1,
    )
    return SlotInput(key, "token", levels[0], levels[0].detach(), ids >= 0, ids, levels=levels)


def previous_masks(
    previous: list[torch.Tensor], mask_features: torch.Tensor, batch: ImageBatch
) -> torch.Tensor:
    """Previous-round logits per image (original size) -> ``[B,h,w]`` on the canvas at the
    resolution of ``mask_features [B,M,h,w]``."""
    h4, w4 = mask_features.shape[-2:]
    h, w = batch.pixels.shape[-2:]
    out = mask_features.new_full((len(previous), h4, w4), -10.0)
    for b, prev in enumerate(previous):
        if tuple(prev.shape) != tuple(batch.original_sizes[b]):
            raise ValueError(
                f"InteractiveSegmentation.previous[{b}]: shape {tuple(prev.shape)} does not match "
                f"the image size {batch.original_sizes[b]}"
            )
        ih, iw = batch.sizes[b]
        resized = F.interpolate(
            prev[None, None].float().to(out.device),
            size=(ih * h4 // h, iw * w4 // w),
            mode="bilinear",
        )
        out[b, : resized.shape[-2], : resized.shape[-1]] = resized[0, 0]
    return out
