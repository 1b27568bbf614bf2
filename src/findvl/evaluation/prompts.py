"""Prompt points drawn before the forward, so rows can share a forward without changing a draw.

The model draws at most ``max_points`` points per image from its prompt regions with the
forward's generator, row after row (:func:`findvl.model.sampler.prompt_points`); a row's draw
thus depends on the rows before it (a row draws only when a region exceeds its share of the
points). :func:`predraw` makes exactly those draws for the rows of one batch-at-a-time forward
and returns each prompt reduced to the drawn pixels: the model then keeps every pixel, so the
same points reach the same tokens whichever rows share the forward, and the generator is no
longer used. The draw repeats the sampler's rule (a test holds the two together).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from findvl.model.requests import VisualPrompt


@dataclass
class DrawnPrompt:
    """A prompt reduced to its drawn pixels.

    Attributes:
        prompt: positive (and negative, when the original had one) masks of the drawn pixels.
        points: number of drawn pixels (spatial tokens of the prompt).
    """

    prompt: VisualPrompt
    points: int


def _regions(prompt: VisualPrompt) -> list[torch.Tensor]:
    """The regions the sampler draws from: the positive one, the negative one when non-empty."""
    if prompt.negative is not None and bool(prompt.negative.any()):
        return [prompt.positive, prompt.negative]
    return [prompt.positive]


def predraw(
    prompts: list[VisualPrompt], *, max_points: int, generator: torch.Generator | None
) -> list[DrawnPrompt]:
    """One prompt per row, drawn in row order from ``generator`` as the model would.

    Rows whose regions all fit their share of ``max_points`` draw nothing and are kept as given.
    """
    out = []
    for prompt in prompts:
        regions = _regions(prompt)
        share = max(1, max_points // len(regions))
        drawn = [_subset(r, share, generator) for r in regions]
        points = sum(int(d.sum()) for d in drawn)
        if all(d is r for d, r in zip(drawn, regions, strict=True)):
            out.append(DrawnPrompt(prompt, points))
        else:
            negative = drawn[1] if len(drawn) > 1 else None
            out.append(DrawnPrompt(VisualPrompt(positive=drawn[0], negative=negative), points))
    return out


def _subset(region: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """The ``k`` pixels of ``region`` the sampler keeps (``region`` itself if it has at most
    ``k``): a random choice in row-major pixel order, as in
    :func:`findvl.model.sampler.prompt_points`."""
    pixels = region.nonzero()
    if len(pixels) <= k:
        return region
    keep = pixels[torch.randperm(len(pixels), generator=generator)[:k].sort().values]
    mask = torch.zeros_like(region)
    mask[keep[:, 0], keep[:, 1]] = True
    return mask
