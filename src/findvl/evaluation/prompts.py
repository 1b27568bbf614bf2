"""Prompt points drawn before the forward, so rows can share a forward without changing a draw.

The model draws at most ``max_points`` points per image from its prompt regions with the
forward's generator, row after row (:func:`findvl.model.sampler.prompt_points`); a row's draw
thus depends on the rows before it (a row draws only when a region exceeds its share of the
points). :func:`predraw` makes exactly those draws for the rows of one batch-at-a-time forward
and returns each prompt reduced to the drawn pixels: the model then keeps every pixel, so the
same points reach the same tokens whichever rows share the forward, and the generator is no
longer used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from findvl.model.requests import VisualPrompt
from findvl.model.sampler import prompt_points


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
    prompts: list[VisualPrompt],
    *,
    max_points: int,
    generator: torch.Generator | None,
    field: str = "prompts",
) -> list[DrawnPrompt]:
    """One prompt per row, drawn in row order from ``generator`` as the model would.

    Rows whose regions all fit their share of ``max_points`` draw nothing and are kept as given.
    """
    out: list[DrawnPrompt | None] = []
    drawing = []
    for b, prompt in enumerate(prompts):
        counts = [int(r.sum()) for r in _regions(prompt)]
        share = max(1, max_points // len(counts))
        if max(counts) <= share:
            out.append(DrawnPrompt(prompt, sum(counts)))
        else:
            out.append(None)
            drawing.append(b)
    if drawing:
        drawn = _draw([prompts[b] for b in drawing], max_points, generator, field)
        for b, d in zip(drawing, drawn, strict=True):
            out[b] = d
    return out  # type: ignore[return-value]


def _draw(
    prompts: list[VisualPrompt], max_points: int, generator: torch.Generator | None, field: str
) -> list[DrawnPrompt]:
    """The model's draw (:func:`~findvl.model.sampler.prompt_points`), back as pixel masks."""
    sizes = [tuple(p.positive.shape) for p in prompts]
    canvas = (max(s[0] for s in sizes), max(s[1] for s in sizes))
    pts = prompt_points(
        [[p] for p in prompts],
        image_sizes=sizes,
        input_sizes=sizes,
        canvas=canvas,
        max_points=max_points,
        generator=generator,
        field=field,
    )
    # with input size == image size, x = (px + 0.5) / W and y = (py + 0.5) / H
    xy = pts.coords.double() * torch.tensor([canvas[1], canvas[0]], dtype=torch.float64)
    pixels = (xy - 0.5).round().long()  # BxPx2 (x, y)
    out = []
    for b, prompt in enumerate(prompts):
        valid = pts.valid[b]
        masks = []
        for keep in (valid & ~pts.negative[b], valid & pts.negative[b]):
            mask = torch.zeros(sizes[b], dtype=torch.bool)
            mask[pixels[b, keep, 1], pixels[b, keep, 0]] = True
            masks.append(mask)
        negative = masks[1] if len(_regions(prompt)) > 1 else None
        out.append(
            DrawnPrompt(VisualPrompt(positive=masks[0], negative=negative), int(valid.sum()))
        )
    return out
