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
    if request.more and len(request.more) != batch:
        raise ValueError(f"ImageTextRetrieval.more: {len(request.more)} entries for {batch} images")


def _captions(request: ImageTextRetrieval) -> list[list[str]]:
    """Each image's captions: ``captions[b]`` first, then ``more[b]``."""
    more = request.more or [[] for _ in request.captions]
    return [[c, *m] for c, m in zip(request.captions, more)]


def slots(model: TaskModel, context: SlotContext, request: ImageTextRetrieval) -> TaskSlots:
    """One caption query per caption over that caption's tokens (the image query is shared).

    Query ``k`` of image ``b`` and the tokens of its ``k``-th caption share id ``k``: content
    and conditional attention keep captions apart, so each is embedded as if alone."""
    rows = _captions(request)
    flat = [c for row in rows for c in row]
    text = model.encode_text(flat, f"{NAME}.captions")
    groups, start = [], 0
    for row in rows:
        groups.append(list(range(start, start + len(row))))
        start += len(row)
    return TaskSlots(
        [
            query_slot(model.interface, QUERIES, [len(row) for row in rows]),
            text_slot(TOKENS, text, groups),
        ]
    )


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: ImageTextRetrieval, built: TaskSlots
) -> RetrievalOutput:
    tokens = next(s for s in built.slots if s.key == TOKENS)
    return assemble.retrieval(out, QUERIES, tokens, built.valid(QUERIES))


TASK = TaskSpec(NAME, ImageTextRetrieval, check, slots, assemble_output)
