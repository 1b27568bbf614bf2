"""Interactive segmentation: one mask per visual prompt, optionally from a previous round."""

from __future__ import annotations

from findvl.model import assemble
from findvl.model.outputs import TargetedSegmentationOutput
from findvl.model.requests import InteractiveSegmentation
from findvl.model.sequence_types import InterfaceOutput
from findvl.model.slots import memory_slot, previous_masks, proposal_slot, query_slot
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec, check_rows

NAME = "interactive_segmentation"
PROPOSALS, QUERIES = f"{NAME}/p.segment", f"{NAME}/q.spatial"
TOKENS, MEMORY = f"{NAME}/t.spatial", f"{NAME}/m.spatial"


def check(request: InteractiveSegmentation, batch: int) -> None:
    check_rows(request, "prompts", batch)


def slots(model: TaskModel, context: SlotContext, request: InteractiveSegmentation) -> TaskSlots:
    """Segment proposals, one spatial query per prompt, the spatial tokens of every prompt and
    (when the request carries a previous round and the variant has it) the spatial memory."""
    feats, interface = context.features, model.interface
    seq = [
        proposal_slot(interface, PROPOSALS, context.batch),
        query_slot(interface, QUERIES, [len(p) for p in request.prompts]),
        interface.spatial_tokens(
            TOKENS,
            feats.source(),
            request.prompts,
            sampling=model.point_sampling(),
            generator=context.generator,
            field=f"{NAME}.prompts",
        ),
    ]
    previous = None
    if request.previous is not None and MEMORY in context.keys:
        seq.append(memory_slot(interface, MEMORY, context.batch))
        previous = previous_masks(request.previous, feats.pixel.mask_features, feats.batch)
    return TaskSlots(seq, previous_mask=previous)


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: InteractiveSegmentation, built: TaskSlots
) -> TargetedSegmentationOutput:
    """Scores ``[B,T,N]`` in pixel space: raw dot products (released weights) or
    ``exp(logit_scale)·cos`` (``pixel_scores="cosine"``)."""
    if model.pixel_scores == "dot":
        score = assemble.pixel_dot
    else:
        score = assemble.pixel_cosine(model.logit_scale.exp())
    return assemble.targeted(out, PROPOSALS, QUERIES, built.valid(QUERIES), score)


TASK = TaskSpec(NAME, InteractiveSegmentation, check, slots, assemble_output)
