"""Interleave retrieval: an embedding for each image and for its interleaved query."""

from __future__ import annotations

from findvl.model import assemble
from findvl.model.outputs import RetrievalOutput
from findvl.model.requests import InterleaveRetrieval
from findvl.model.sequence_types import InterfaceOutput
from findvl.model.slots import query_slot
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec, check_list
from findvl.model.tasks.interleaved_text import text_and_reference_slots

NAME = "interleave_retrieval"
QUERIES = f"{NAME}/q.interleave"


def check(request: InterleaveRetrieval, batch: int) -> None:
    check_list(request, "texts", batch)


def slots(model: TaskModel, context: SlotContext, request: InterleaveRetrieval) -> TaskSlots:
    """One interleave query per image over its text and reference tokens."""
    seq = [query_slot(model.interface, QUERIES, [1] * len(request.texts))]
    text_slots, visual = text_and_reference_slots(model, context, NAME, request.texts)
    return TaskSlots(seq + text_slots, is_visual=visual)


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: InterleaveRetrieval, built: TaskSlots
) -> RetrievalOutput:
    return assemble.retrieval(out, QUERIES)


TASK = TaskSpec(NAME, InterleaveRetrieval, check, slots, assemble_output)
