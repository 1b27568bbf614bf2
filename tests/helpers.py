"""Small builders shared by tests."""

from __future__ import annotations

import torch

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
from findvl.model.sampler import rasterize


def images(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]


def point(size, x, y, radius=2):
    return VisualPrompt(rasterize(size, points=[(x, y)], radius=radius))


def all_requests(imgs, *, previous=False, reference_image=None):
    """One request of every task for ``imgs`` (sizes taken from the images)."""
    sizes = [tuple(i.shape[-2:]) for i in imgs]
    prompts = [
        [point(s, 5 + j * 7, 6 + j * 3) for j in range(1 + b % 2)] for b, s in enumerate(sizes)
    ]
    texts = []
    for s in sizes:
        ref_size = tuple(reference_image.shape[-2:]) if reference_image is not None else s
        ref = VisualReference(reference_image, point(ref_size, 9, 9))
        texts.append(
            InterleavedText(
                "a red circle next to a blue square", [Entity(0, 12, ref), Entity(21, 34)]
            )
        )
    reqs = [
        GenericSegmentation(["red circle", "blue square", "grass"]),
        GroundedSegmentation([["the red circle"] + ["a square"] * b for b in range(len(imgs))]),
        InteractiveSegmentation(
            prompts, previous=[torch.randn(s) for s in sizes] if previous else None
        ),
        ImageTextRetrieval([f"caption number {b}" for b in range(len(imgs))]),
        InterleaveSegmentation(texts),
        InterleaveRetrieval(texts),
    ]
    return reqs
