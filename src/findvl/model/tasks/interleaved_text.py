"""Slots of an interleaved text (shared by interleave segmentation and interleave retrieval):
its tokens, with visual entities read as a placeholder plus the spatial tokens of their region."""

from __future__ import annotations

from collections.abc import Callable

from findvl.model.requests import InterleavedText
from findvl.model.sequence_types import ImageFeatures, SlotInput, SpatialSource
from findvl.model.slots import interleave_text_slot, reference_slot, splice_visual_entities
from findvl.model.tasks.base import SlotContext, TaskModel


def text_and_reference_slots(
    model: TaskModel, context: SlotContext, task: str, items: list[InterleavedText]
) -> tuple[list[SlotInput], list[list[bool]]]:
    """``task/t.interleave`` (and ``task/t.spatial`` when some entity is visual); the per-image,
    per-entity visual flags."""
    spliced = [splice_visual_entities(item, f"{task}.texts[{i}]") for i, item in enumerate(items)]
    text = model.encode_text([s[0] for s in spliced], f"{task}.texts")
    visual = [[e.reference is not None for e in item.entities] for item in items]
    slots = [
        interleave_text_slot(
            model.interface, f"{task}/t.interleave", text, [s[1] for s in spliced], visual
        )
    ]
    ref = reference_slot(
        model.interface,
        f"{task}/t.spatial",
        items,
        _reference_resolver(model, items, context.features, task),
        sampling=model.point_sampling(),
        generator=context.generator,
        field=f"{task}.texts",
    )
    if ref is not None:
        slots.append(ref)
    return slots, visual


def _reference_resolver(
    model: TaskModel, items: list[InterleavedText], feats: ImageFeatures, task: str
) -> Callable[[int, int], tuple[SpatialSource, int]]:
    """Encode every reference image once; map (image b, entity e) to its source row (a
    reference image's, a batch row's, or image b's own)."""
    others = [
        (b, e, ent.reference.image)
        for b, item in enumerate(items)
        for e, ent in enumerate(item.entities)
        if ent.reference is not None and ent.reference.image is not None
    ]
    table = {}
    if others:
        ref_source = model.encode_images([img for _, _, img in others]).source()
        table = {(b, e): (ref_source, row) for row, (b, e, _) in enumerate(others)}
    own = feats.source()
    batch = len(items)
    for b, item in enumerate(items):
        for e, ent in enumerate(item.entities):
            ref = ent.reference
            if ref is None or ref.image is not None or ref.row is None:
                continue
            if not 0 <= ref.row < batch:
                raise ValueError(
                    f"{task}.texts[{b}].entities[{e}].reference.row: {ref.row} is not a row of the "
                    f"batch of {batch} images"
                )
            table[(b, e)] = (own, ref.row)
    return lambda b, e: table.get((b, e), (own, b))
