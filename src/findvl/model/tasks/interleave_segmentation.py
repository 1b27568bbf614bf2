"""Interleave segmentation: one mask per entity of an interleaved text (phrase or region)."""

from __future__ import annotations

import torch

from findvl.model import assemble
from findvl.model.outputs import TargetedSegmentationOutput
from findvl.model.requests import InterleaveSegmentation
from findvl.model.sequence_types import InterfaceOutput
from findvl.model.slots import proposal_slot, query_slot
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec, check_list
from findvl.model.tasks.interleaved_text import text_and_reference_slots

NAME = "interleave_segmentation"
PROPOSALS, QUERIES = f"{NAME}/p.entity", f"{NAME}/q.entity"


def check(request: InterleaveSegmentation, batch: int) -> None:
    check_list(request, "texts", batch)


def slots(model: TaskModel, context: SlotContext, request: InterleaveSegmentation) -> TaskSlots:
    """Entity proposals, one entity query per entity, the text and reference tokens."""
    items = request.texts
    seq = [
        proposal_slot(model.interface, PROPOSALS, len(items)),
        query_slot(model.interface, QUERIES, [len(i.entities) for i in items]),
    ]
    text_slots, visual = text_and_reference_slots(model, context, NAME, items)
    return TaskSlots(seq + text_slots, is_visual=visual)


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: InterleaveSegmentation, built: TaskSlots
) -> TargetedSegmentationOutput:
    """Entity scores ``[B,T,N]``: visual entities in pixel space, text entities in semantic
    space (raw dot products, or ``exp(logit_scale)·cos`` with ``pixel_scores="cosine"``)."""
    valid = built.valid(QUERIES)
    n = valid.shape[1]
    is_visual = torch.tensor(
        [row + [False] * (n - len(row)) for row in built.is_visual],
        dtype=torch.bool,
        device=valid.device,
    )
    if model.pixel_scores == "dot":
        text, vis = assemble.semantic_dot, assemble.pixel_dot
    else:
        scale = model.logit_scale.exp()
        text, vis = assemble.semantic_cosine(scale), assemble.pixel_cosine(scale)

    def score(p, q):
        return torch.where(is_visual[..., None], vis(p, q), text(p, q))

    return assemble.targeted(out, PROPOSALS, QUERIES, valid, score, is_visual)


TASK = TaskSpec(NAME, InterleaveSegmentation, check, slots, assemble_output)
