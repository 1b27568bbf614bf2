"""The conventions a set of weights was trained with, applied at inference.

Released FIND weights expect (``ConventionsConfig(point_convention="official",
points_per_level=True, class_prompt="describe", grounding_scale_cap=100.0)``):

* spatial-token points at ``(x/W, y/H)`` sampled with ``align_corners=True``;
* an independent point draw for each feature level;
* class names embedded as ``"Describe the concept of {name}."`` with the COCO suffixes
  ``-other``, ``-merged`` and ``-stuff`` removed (``background`` included);
* the grounding temperature ``exp(logit_scale)`` capped at 100.

findvl's own presets keep pixel-centre points, one shared draw, bare class names and no cap.
"""

from __future__ import annotations

import typing

from findvl.config import (
    OFFICIAL_CONVENTIONS,
    ClassPrompt,
    ConventionsConfig,
    GroundingQuery,
    ImageQuery,
)
from findvl.model.sampler import CONVENTIONS

CLASS_PROMPTS = typing.get_args(ClassPrompt)
#: Conventions that choose between two embeddings, and their choices.
EMBEDDING_CHOICES = {
    "image_query": typing.get_args(ImageQuery),
    "grounding_query": typing.get_args(GroundingQuery),
}
DESCRIBE_TEMPLATE = "Describe the concept of {}."
STRIPPED_SUFFIXES = ("-other", "-merged", "-stuff")

#: The conventions of the released FIND weights.
OFFICIAL = OFFICIAL_CONVENTIONS


def check_conventions(conventions: ConventionsConfig) -> ConventionsConfig:
    """``ValueError`` naming the key for an unknown value."""
    if conventions.point_convention not in CONVENTIONS:
        raise ValueError(
            f"conventions.point_convention={conventions.point_convention!r}: "
            f"expected one of {CONVENTIONS}"
        )
    if conventions.class_prompt not in CLASS_PROMPTS:
        raise ValueError(
            f"conventions.class_prompt={conventions.class_prompt!r}: "
            f"expected one of {CLASS_PROMPTS}"
        )
    for key, allowed in EMBEDDING_CHOICES.items():
        if getattr(conventions, key) not in allowed:
            raise ValueError(
                f"conventions.{key}={getattr(conventions, key)!r}: expected one of {allowed}"
            )
    cap = conventions.grounding_scale_cap
    if cap is not None and not cap > 0:
        raise ValueError(f"conventions.grounding_scale_cap={cap!r}: expected a positive number")
    return conventions


def class_text(name: str, mode: str) -> str:
    """The text embedded for class ``name``: itself, or the official description prompt."""
    if mode == "name":
        return name
    for suffix in STRIPPED_SUFFIXES:
        name = name.replace(suffix, "")
    return DESCRIBE_TEMPLATE.format(name)
