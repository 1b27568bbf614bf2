"""Generic segmentation: every region of a vocabulary of classes (panoptic, instance, semantic).

The image side is the shared object proposals; the class side is a text-only pass
(:func:`class_embeddings`), so a vocabulary costs one pass whatever the number of images.
"""

from __future__ import annotations

import torch

from findvl.model import assemble
from findvl.model.conventions import class_text
from findvl.model.image_cache import caching_allowed, weights_version
from findvl.model.outputs import GenericSegmentationOutput
from findvl.model.requests import GenericSegmentation
from findvl.model.sequence_types import InterfaceOutput
from findvl.model.slots import query_slot, text_slot
from findvl.model.tasks.base import SlotContext, TaskModel, TaskSlots, TaskSpec, check_list
from findvl.prototypes import prototype_set

NAME = "generic_segmentation"


def check(request: GenericSegmentation, batch: int) -> None:
    check_list(request, "classes", None)


def slots(model: TaskModel, context: SlotContext, request: GenericSegmentation) -> TaskSlots:
    return TaskSlots([])  # the object proposals are shared (added by the model)


def class_embeddings(model: TaskModel, classes: list[str]) -> torch.Tensor:
    """Semantic embeddings ``[K+1,P]`` of class names (+ ``background``), image-free.

    The class query attends only its class tokens, so it is computed in a text-only pass. In
    inference (no grad, eval mode) the table is served from ``model.class_tables`` keyed by
    the vocabulary, the language encoder and the version of the weights it depends on.
    """
    names = [class_text(n, model.conventions.class_prompt) for n in [*classes, "background"]]
    cache = getattr(model, "class_tables", None)
    if cache is None or not caching_allowed(model):
        return _class_pass(model, names)
    version = weights_version(
        model.language,
        model.interface,
        model.lang_proj,
        model.text_shift,
        model.text_scale,
        model.text_whiten,
    )
    key = (tuple(names), id(model.language))
    return cache.get(key, version, lambda: _class_pass(model, names))


def _class_pass(model: TaskModel, names: list[str]) -> torch.Tensor:
    text = model.encode_text(names, f"{NAME}.classes")
    if model.conventions.class_table == "text":  # the projected end-of-text tokens  [K,D]
        return text.end_of_text()
    pset = prototype_set([NAME], model.variant)
    k = len(names)
    seq = [
        query_slot(model.interface, f"{NAME}/q.class", [1] * k),
        text_slot(f"{NAME}/t.class", text, [[i] for i in range(k)]),
    ]
    out = model.interface(seq, pset=pset, pixel=None)
    return out.final[f"{NAME}/q.class"].semantic[:, 0]


def assemble_output(
    model: TaskModel, out: InterfaceOutput, request: GenericSegmentation, built: TaskSlots
) -> GenericSegmentationOutput:
    table = class_embeddings(model, request.classes)
    return assemble.generic(out, table, model.class_scale(), request.classes)


TASK = TaskSpec(NAME, GenericSegmentation, check, slots, assemble_output)
