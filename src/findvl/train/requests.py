"""The requests of a training batch: examples -> one request per task.

Every image of a batch carries targets for every task (:class:`TrainExample`); a task is left
out when some image has no target for it. Interleave retrieval takes its visual references
from *other* images of the batch (:func:`cross_image_references`).
"""

from __future__ import annotations

import torch

from findvl.data.training import TrainExample
from findvl.model.requests import (
    Entity,
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
    VisualReference,
)


def caption_rows(
    examples: list[TrainExample], *, captions: int = 1, negatives: int = 0
) -> tuple[list[list[str]], list[int]]:
    """Per image the captions that ride with its main one (``ImageTextRetrieval.more``):
    up to ``captions - 1`` of its other captions, then up to ``negatives`` hard negatives;
    and how many of them are true captions."""
    rows, true = [], []
    for ex in examples:
        others = list(ex.more_captions[: max(0, captions - 1)])
        rows.append(others + list(ex.caption_negatives[:negatives]))
        true.append(len(others))
    return rows, true


def build_requests(
    examples: list[TrainExample], class_names: list[str], *, captions: int = 1, negatives: int = 0
) -> list:
    """One request per task for a batch; a task is left out if some image has no target.

    ``captions`` / ``negatives``: captions per image and hard negatives per image of the
    image-caption term (:func:`caption_rows`; 1 and 0: one caption per image, as FIND)."""
    requests: list = [GenericSegmentation(list(class_names))]
    if all(ex.phrases for ex in examples):
        requests.append(GroundedSegmentation([list(ex.phrases) for ex in examples]))
    if all(ex.prompts for ex in examples):
        requests.append(_interactive(examples))
    if all(ex.caption for ex in examples):
        more, _ = caption_rows(examples, captions=captions, negatives=negatives)
        more = more if any(more) else []
        requests.append(ImageTextRetrieval([ex.caption for ex in examples], more))
    if all(ex.entity_spans for ex in examples):
        texts = [
            InterleavedText(
                ex.entity_text,
                [
                    Entity(s, e, None if k is None else VisualReference(None, VisualPrompt(k)))
                    for (s, e), k in zip(ex.entity_spans, ex.entity_strokes)
                ],
            )
            for ex in examples
        ]
        requests += [
            InterleaveSegmentation(texts),
            InterleaveRetrieval(cross_image_references(examples)),
        ]
    return requests


def cross_image_references(examples: list[TrainExample]) -> list[InterleavedText]:
    """The entity captions for interleave retrieval: each visual entity's region is the full
    mask of a segment of the same category in *another* image of the batch, the one closest
    in mean colour, as FIND-Bench's retrieval references are the nearest same-class segment
    of another image (:mod:`findvl.data.engine.references`). An entity with no such segment in
    the batch stays text.

    A region of the image itself (FIND's training stroke) would put the positive image's own
    features into its query: the contrastive term is then solved by matching them, which no
    evaluation query (its regions come from other images) allows.
    """
    colours = [_segment_colours(ex) for ex in examples]
    texts = []
    for b, ex in enumerate(examples):
        entities = []
        for (start, end), seg, stroke in zip(
            ex.entity_spans, ex.entity_segments, ex.entity_strokes
        ):
            ref = None
            if stroke is not None:
                found = _nearest_same_category(examples, colours, b, seg)
                if found is not None:
                    row, other = found
                    ref = VisualReference(None, VisualPrompt(examples[row].masks[other]), row=row)
            entities.append(Entity(start, end, ref))
        texts.append(InterleavedText(ex.entity_text, entities))
    return texts


def _segment_colours(ex: TrainExample) -> torch.Tensor:
    """``[N,3]`` mean RGB of each segment."""
    masks = ex.masks.flatten(1).float()  # NxHW
    pixels = ex.image.flatten(1).float()  # 3xHW
    return (masks @ pixels.T) / masks.sum(1, keepdim=True).clamp(min=1.0)


def _nearest_same_category(
    examples: list[TrainExample], colours: list[torch.Tensor], b: int, seg: int
) -> tuple[int, int] | None:
    """``(row, segment)`` of the segment of ``seg``'s category in another image whose mean
    colour is closest (ties: the first row after ``b``, cyclically)."""
    category, colour = int(examples[b].classes[seg]), colours[b][seg]
    best, best_distance = None, float("inf")
    n = len(examples)
    for step in range(1, n):
        row = (b + step) % n
        for other in torch.nonzero(examples[row].classes == category)[:, 0].tolist():
            distance = float((colours[row][other] - colour).square().sum())
            if distance < best_distance:
                best, best_distance = (row, other), distance
    return best


def _interactive(examples: list[TrainExample]) -> InteractiveSegmentation:
    """Prompts (with their negatives) and, when every image has one, the previous round."""
    prompts = [
        [
            VisualPrompt(p, None if ex.prompt_negatives is None else ex.prompt_negatives[k])
            for k, p in enumerate(ex.prompts)
        ]
        for ex in examples
    ]
    previous = [ex.previous for ex in examples]
    if any(p is None for p in previous):
        previous = None
    return InteractiveSegmentation(prompts, previous=previous)
