"""What a task module provides (:class:`TaskSpec`) and what it may use of the model
(:class:`TaskModel`).

A task module holds everything the model does for one task: its request type and the checks of
that request, the slots it adds to the interface sequence and the assembly of its typed output.
Its prototype (the attention rules, plain data) lives in :mod:`findvl.prototypes` under the same
name; its losses and evaluation live in the training and evaluation layers, keyed by that name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from findvl.config import ConventionsConfig
from findvl.model.interface import FindInterface
from findvl.model.sequence_types import (
    ImageFeatures,
    InterfaceOutput,
    PointSampling,
    ProjectedText,
    SlotInput,
)


class TaskModel(Protocol):
    """The parts of :class:`~findvl.model.find.FindModel` a task module uses."""

    interface: FindInterface
    variant: str
    pixel_scores: str
    conventions: ConventionsConfig
    logit_scale: torch.Tensor
    language: Any  # the language encoder (its identity keys the class-table cache)
    lang_proj: torch.Tensor
    text_shift: torch.Tensor
    text_scale: torch.Tensor
    text_whiten: torch.Tensor | None
    training: bool

    def encode_text(self, texts: list[str], field: str = "texts") -> ProjectedText: ...

    def encode_images(self, images: list[torch.Tensor]) -> ImageFeatures: ...

    def class_scale(self) -> torch.Tensor: ...

    def point_sampling(self) -> PointSampling: ...


@dataclass(frozen=True)
class SlotContext:
    """What every task's slot builder sees in one forward.

    Attributes:
        features: the encoded images of the batch.
        keys: slot keys of the compiled prototype set (optional groups appear here only when
            the variant has them).
        generator: random source for prompt points.
    """

    features: ImageFeatures
    keys: frozenset[str]
    generator: torch.Generator | list[torch.Generator] | None

    @property
    def batch(self) -> int:
        return self.features.batch.pixels.shape[0]


@dataclass
class TaskSlots:
    """The slots one task adds to a forward, and what its assembly needs of them.

    Attributes:
        slots: in sequence order.
        previous_mask: ``[B,H/4,W/4]`` previous-round logits for the spatial memory, or None.
        is_visual: per image, per entity: given as a visual reference (interleaved tasks).
        prompt_regions: ``([B,T,h,w], [B,T,h,w])`` positive and negative prompt coverage at
            mask resolution, for the click agreement (:mod:`findvl.model.agreement`), or None.
        sentences: ``[B,T,D]`` each target text's projected end-of-text token, where the
            scores read them instead of the target queries (``conventions.grounding_query``).
    """

    slots: list[SlotInput]
    previous_mask: torch.Tensor | None = None
    is_visual: list[list[bool]] | None = None
    prompt_regions: tuple[torch.Tensor, torch.Tensor] | None = None
    sentences: torch.Tensor | None = None

    def valid(self, key: str) -> torch.Tensor:
        """``[B,n]`` validity of the slot ``key``."""
        return next(s.valid for s in self.slots if s.key == key)


@dataclass(frozen=True)
class TaskSpec:
    """One task, as the model runs it.

    Attributes:
        name: the task's name: its prototype in :mod:`findvl.prototypes` and its field of
            :class:`~findvl.model.outputs.FindOutput`.
        request: the request type that asks for it.
        check: ``check(request, batch)`` raises ``ValueError`` naming the bad field.
        slots: ``slots(model, context, request) -> TaskSlots``.
        assemble: ``assemble(model, interface_output, request, task_slots)`` -> the task's
            typed output.
    """

    name: str
    request: type
    check: Callable[[Any, int], None]
    slots: Callable[[TaskModel, SlotContext, Any], TaskSlots]
    assemble: Callable[[TaskModel, InterfaceOutput, Any, TaskSlots], Any]


def check_list(request: Any, name: str, batch: int | None) -> None:
    """``request.name`` is a non-empty list, of ``batch`` entries unless ``batch`` is None."""
    value = getattr(request, name)
    kind = type(request).__name__
    if len(value) == 0:
        raise ValueError(f"{kind}.{name}: the list is empty")
    if batch is not None and len(value) != batch:
        raise ValueError(f"{kind}.{name}: {len(value)} entries for {batch} images")


def check_rows(request: Any, name: str, batch: int) -> None:
    """``request.name`` has one non-empty list per image."""
    check_list(request, name, batch)
    for b, row in enumerate(getattr(request, name)):
        if len(row) == 0:
            raise ValueError(f"{type(request).__name__}.{name}[{b}]: the list is empty")
