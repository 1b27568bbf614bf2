"""Grounded segmentation: one mask per referring phrase of each image."""

from __future__ import annotations

from findvl.model import assemble
from findvl.model.assemble import cosine_logits
from findvl.model.outputs import TargetedSegmentationOutput
from findvl.model.requests import GroundedSegmentation
from findvl.model.sequence_types import InterfaceOutput
from findvl.model.slots import proposal_slot, query_slot, text_slot
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec, check_rows

NAME = "grounded_segmentation"
PROPOSALS, QUERIES, TOKENS = f"{NAME}/p.grounding", f"{NAME}/q.description", f"{NAME}/t.description"


def check(request: GroundedSegmentation, batch: int) -> None:
    check_rows(request, "phrases", batch)


def slots(model: TaskModel, context: SlotContext, request: GroundedSegmentation) -> TaskSlots:
    """Grounding proposals, one description query per phrase, the tokens of every phrase."""
    flat = [p for phrases in request.phrases for p in phrases]
    text = model.encode_text(flat, f"{NAME}.phrases")
    groups, start = [], 0
    for phrases in request.phrases:
        groups.append(list(range(start, start + len(phrases))))
        start += len(phrases)
    queries = query_slot(model.interface, QUERIES, [len(p) for p in request.phrases])
    sentences = None
    if model.conventions.grounding_query == "text":
        last = text.end_of_text()  # TxD
        sentences = last.new_zeros(*queries.valid.shape, last.shape[-1])  # BxTxD
        sentences[queries.valid] = last
    return TaskSlots(
        [
            proposal_slot(model.interface, PROPOSALS, context.batch),
            queries,
            text_slot(TOKENS, text, groups),
        ],
        sentences=sentences,
    )


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: GroundedSegmentation, built: TaskSlots
) -> TargetedSegmentationOutput:
    """Scores ``[B,T,N]``: ``exp(logit_scale)·cos`` of the semantic embeddings (the
    temperature capped where the conventions say so); the phrase side is the description
    query's output, or with ``conventions.grounding_query="text"`` the phrase's projected
    end-of-text token."""
    scale = model.logit_scale.exp()
    cap = model.conventions.grounding_scale_cap
    if cap is not None:
        scale = scale.clamp(max=cap)
    if built.sentences is None:
        score = assemble.semantic_cosine(scale)
        return assemble.targeted(out, PROPOSALS, QUERIES, built.valid(QUERIES), score)
    sentences = built.sentences
    score = lambda p, q: cosine_logits(sentences, p.semantic, scale)  # noqa: E731
    return assemble.targeted(
        out, PROPOSALS, QUERIES, built.valid(QUERIES), score, embeddings=sentences
    )


TASK = TaskSpec(NAME, GroundedSegmentation, check, slots, assemble_output)
