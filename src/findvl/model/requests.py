"""Typed requests: what one forward is asked to do. Any mix of the six tasks at once.

Coordinates and masks are in each image's own pixel grid (``[h,w]`` of the image as given to
the model, before resizing). Per-image lists have one entry per image of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class VisualPrompt:
    """One visual prompt on an image: a rasterised positive region and optional negatives.

    Build one from points, boxes, scribbles, polygons or circles with
    :func:`findvl.model.sampler.rasterize` or pass a mask directly.

    Attributes:
        positive: ``[h,w]`` bool, the region the user marked (point disk, stroke, box, mask).
        negative: ``[h,w]`` bool or None, regions marked as *not* the object.
    """

    positive: torch.Tensor
    negative: torch.Tensor | None = None


@dataclass
class VisualReference:
    """A region of another image standing in for an entity of an interleaved text.

    Attributes:
        image: ``[3,H,W]`` RGB (uint8 or 0..255 float) of the reference image; None means the
            image being segmented (as in training).
        prompt: the region on that image.
    """

    image: torch.Tensor | None
    prompt: VisualPrompt


@dataclass
class Entity:
    """An entity of an interleaved text: a character span, optionally replaced by a region.

    Attributes:
        start: first character of the phrase in :attr:`InterleavedText.text`.
        end: one past the last character.
        reference: if given, the phrase is replaced by this visual reference.
    """

    start: int
    end: int
    reference: VisualReference | None = None


@dataclass
class InterleavedText:
    """A sentence whose entities are phrases or visual references."""

    text: str
    entities: list[Entity] = field(default_factory=list)


@dataclass
class GenericSegmentation:
    """Segment every region of the given classes (one vocabulary for the whole batch).

    Attributes:
        classes: class names or descriptions; a ``"background"`` no-object entry is added.
    """

    classes: list[str]


@dataclass
class GroundedSegmentation:
    """One mask per referring phrase. ``phrases[b]`` are the phrases of image b."""

    phrases: list[list[str]]


@dataclass
class InteractiveSegmentation:
    """One mask per visual prompt. ``prompts[b]`` are the prompts of image b.

    Attributes:
        previous: optional ``[h,w]`` mask logits per image from the previous round; enables
            the spatial memory.
    """

    prompts: list[list[VisualPrompt]]
    previous: list[torch.Tensor] | None = None


@dataclass
class ImageTextRetrieval:
    """Embed each image and one caption per image (``captions[b]`` belongs to image b)."""

    captions: list[str]


@dataclass
class InterleaveSegmentation:
    """One mask per entity of an interleaved text. ``texts[b]`` belongs to image b."""

    texts: list[InterleavedText]


@dataclass
class InterleaveRetrieval:
    """Embed each image and one interleaved query per image (``texts[b]`` pairs image b)."""

    texts: list[InterleavedText]


Request = (
    GenericSegmentation
    | GroundedSegmentation
    | InteractiveSegmentation
    | ImageTextRetrieval
    | InterleaveSegmentation
    | InterleaveRetrieval
)

TASK_OF_REQUEST: dict[type, str] = {
    GenericSegmentation: "generic_segmentation",
    GroundedSegmentation: "grounded_segmentation",
    ImageTextRetrieval: "image_text_retrieval",
    InteractiveSegmentation: "interactive_segmentation",
    InterleaveSegmentation: "interleave_segmentation",
    InterleaveRetrieval: "interleave_retrieval",
}
