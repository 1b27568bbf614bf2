"""Typed requests: what one forward is asked to do. Any mix of the six tasks at once.

Coordinates and masks are in each image's own pixel grid (``[h,w]`` of the image as given to
the model, before resizing). Per-image lists have one entry per image of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from findvl.encoders.markup import parse_markup


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
        image: ``[3,H,W]`` RGB (uint8 or 0..255 float) of the reference image; None means an
            image of the batch itself: ``row``, or the image being segmented when ``row`` is
            None (as FIND trains).
        prompt: the region on that image.
        row: with ``image`` None, the batch row of the image holding the region (training:
            a same-category segment of another image of the batch, as FIND-Bench's retrieval
            references are).
    """

    image: torch.Tensor | None
    prompt: VisualPrompt
    row: int | None = None


@dataclass
class Entity:
    """An entity of an interleaved text: a character span, optionally replaced by a region.

    Attributes:
        start: first character of the phrase in :attr:`InterleavedText.text`.
        end: one past the last character.
        reference: if given, the phrase is replaced by this visual reference.
        entity_id: the id from FIND-Bench markup (for bookkeeping; not used by the model).
    """

    start: int
    end: int
    reference: VisualReference | None = None
    entity_id: int | None = None


@dataclass
class InterleavedText:
    """A sentence whose entities are phrases or visual references.

    Visual entities are read by the model as the placeholder ``[INTERACTIVE]`` plus the
    reference's spatial tokens; every occurrence is handled at its own position.
    """

    text: str
    entities: list[Entity] = field(default_factory=list)

    @classmethod
    def from_markup(
        cls, raw: str, references: Mapping[int, VisualReference] | None = None
    ) -> InterleavedText:
        """Parse ``[id]<phrase>`` markup; every occurrence of an id in ``references`` becomes
        that visual reference. Unknown ids in ``references`` raise ``ValueError``."""
        references = dict(references or {})
        parsed = parse_markup(raw)
        unknown = set(references) - {s.entity_id for s in parsed.spans}
        if unknown:
            raise ValueError(f"references: entities {sorted(unknown)} do not occur in {raw!r}")
        entities = [
            Entity(s.start, s.end, references.get(s.entity_id), s.entity_id) for s in parsed.spans
        ]
        return cls(parsed.text, entities)


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
    """Embed each image and one caption per image (``captions[b]`` belongs to image b).

    ``more[b]``: further captions that ride with image b (empty, or one list per image), each
    embedded on its own as ``captions[b]`` is (``RetrievalOutput`` ``EmbeddingPair.more``);
    training uses them for the image's other captions and for hard negatives.
    """

    captions: list[str]
    more: list[list[str]] = field(default_factory=list)


@dataclass
class InterleaveSegmentation:
    """One mask per entity of an interleaved text. ``texts[b]`` belongs to image b."""

    texts: list[InterleavedText]


@dataclass
class InterleaveRetrieval:
    """Embed each image and one interleaved query per image (``texts[b]`` pairs image b)."""

    texts: list[InterleavedText]


#: Any request; the task each one asks for is :data:`findvl.model.tasks.TASK_TABLE`.
Request = (
    GenericSegmentation
    | GroundedSegmentation
    | InteractiveSegmentation
    | ImageTextRetrieval
    | InterleaveSegmentation
    | InterleaveRetrieval
)
