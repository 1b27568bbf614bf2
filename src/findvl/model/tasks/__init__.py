"""The six tasks, one module each, in one explicit table keyed by request type.

A task module (see :mod:`findvl.model.tasks.base`) holds the task's request checks, the slots it
adds to the interface sequence and the assembly of its output; its prototype is the entry of the
same name in :mod:`findvl.prototypes`. Adding a task: write its prototype, its request type, its
module, and add one row to :data:`TASK_TABLE` (then its loss and evaluation, keyed by its name).

The table's order is the order of the tasks' slots in a joint sequence.
"""

from __future__ import annotations

from findvl.model.interface import FindInterface
from findvl.model.requests import (
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleaveRetrieval,
    InterleaveSegmentation,
    Request,
)
from findvl.model.sequence_types import SlotInput
from findvl.model.slots import proposal_slot, query_slot
from findvl.model.tasks import (
    generic_segmentation,
    grounded_segmentation,
    image_text_retrieval,
    interactive_segmentation,
    interleave_retrieval,
    interleave_segmentation,
)
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec
from findvl.prototypes import IMAGE_QUERY, OBJECT_PROPOSALS

__all__ = [
    "TASK_TABLE",
    "SlotContext",
    "TaskModel",
    "TaskSlots",
    "TaskSpec",
    "check_requests",
    "shared_slots",
    "task_of",
]

TASK_TABLE: dict[type, TaskSpec] = {
    GenericSegmentation: generic_segmentation.TASK,
    GroundedSegmentation: grounded_segmentation.TASK,
    InteractiveSegmentation: interactive_segmentation.TASK,
    ImageTextRetrieval: image_text_retrieval.TASK,
    InterleaveSegmentation: interleave_segmentation.TASK,
    InterleaveRetrieval: interleave_retrieval.TASK,
}


def task_of(request: Request) -> TaskSpec | None:
    """The task a request asks for (None for an unknown request type)."""
    return TASK_TABLE.get(type(request))


def check_requests(requests: list[Request], batch: int) -> dict[str, Request]:
    """Requests of one forward -> ``{task name: request}`` in table order; ``ValueError``
    naming the field when a request is unknown, repeated, empty, or has a per-image list not
    of ``batch`` entries."""
    if not requests:
        raise ValueError("requests: at least one request is required")
    given: dict[str, Request] = {}
    for i, req in enumerate(requests):
        spec = task_of(req)
        if spec is None:
            raise ValueError(f"requests[{i}]: unknown request type {type(req).__name__}")
        if spec.name in given:
            raise ValueError(f"requests[{i}]: a second {type(req).__name__} request")
        given[spec.name] = req
    for req in given.values():
        TASK_TABLE[type(req)].check(req, batch)
    return {s.name: given[s.name] for s in TASK_TABLE.values() if s.name in given}


def shared_slots(interface: FindInterface, keys: frozenset[str], batch: int) -> list[SlotInput]:
    """The groups several tasks share (object proposals, the image query), when present."""
    slots = []
    if OBJECT_PROPOSALS in keys:
        slots.append(proposal_slot(interface, OBJECT_PROPOSALS, batch))
    if IMAGE_QUERY in keys:
        slots.append(query_slot(interface, IMAGE_QUERY, [1] * batch))
    return slots
