"""Interactive segmentation: one mask per visual prompt, optionally from a previous round."""

from __future__ import annotations

from findvl.model import assemble
from findvl.model.agreement import click_agreement, prompt_regions
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
    regions = None
    if model.conventions.click_agreement > 0 and not model.training:
        cells = tuple(feats.pixel.mask_features.shape[-2:])
        canvas = tuple(feats.batch.pixels.shape[-2:])
        regions = prompt_regions(request.prompts, canvas, feats.batch.sizes, cells)
    return TaskSlots(seq, previous_mask=previous, prompt_regions=regions)


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: InteractiveSegmentation, built: TaskSlots
) -> TargetedSegmentationOutput:
    """Scores ``[B,T,N]`` in pixel space: raw dot products (released weights) or
    ``exp(logit_scale)·cos`` (``pixel_scores="cosine"``); at inference plus the click
    agreement of each layer's masks where the conventions ask for it."""
    if model.pixel_scores == "dot":
        score = assemble.pixel_dot
    else:
        score = assemble.pixel_cosine(model.logit_scale.exp())
    result = assemble.targeted(out, PROPOSALS, QUERIES, built.valid(QUERIES), score)
    if built.prompt_regions is not None:
        weight = model.conventions.click_agreement
        for layer in result.layers:
            # the final layer's masks are formed for it even when the forward kept factors
            if layer.masks is not None or layer is result.final:
                layer.logits = layer.logits + weight * click_agreement(
                    layer.dense(), *built.prompt_regions
                )
    return result


TASK = TaskSpec(NAME, InteractiveSegmentation, check, slots, assemble_output)
