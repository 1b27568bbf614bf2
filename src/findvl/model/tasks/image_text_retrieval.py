"""Image-text retrieval: an embedding for each image and for its caption."""

from __future__ import annotations

from findvl.model import assemble
from findvl.model.outputs import RetrievalOutput
from findvl.model.requests import ImageTextRetrieval
from findvl.model.sequence_types import InterfaceOutput
from findvl.model.slots import query_slot, text_slot
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec, check_list

NAME = "image_text_retrieval"
QUERIES, TOKENS = f"{NAME}/q.caption", f"{NAME}/t.caption"


def check(request: ImageTextRetrieval, batch: int) -> None:
    check_list(request, "captions", batch)


def slots(model: TaskModel, context: SlotContext, request: ImageTextRetrieval) -> TaskSlots:
    """One caption query per image over that caption's tokens (the image query is shared)."""
    text = model.encode_text(request.captions, f"{NAME}.captions")
    b = context.batch
    return TaskSlots(
        [
            query_slot(model.interface, QUERIES, [1] * b),
            text_slot(TOKENS, text, [[i] for i in range(b)]),
        ]
    )


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: ImageTextRetrieval, built: TaskSlots
) -> RetrievalOutput:
    tokens = next(s for s in built.slots if s.key == TOKENS)
    return assemble.retrieval(out, QUERIES, tokens)


TASK = TaskSpec(NAME, ImageTextRetrieval, check, slots, assemble_output)
