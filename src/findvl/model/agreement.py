"""Click agreement: how well each proposal's mask fits a visual prompt, added to its score at
inference (``conventions.click_agreement``).

FIND chooses the mask of a visual prompt by the learned score alone. A proposal whose mask
leaves out the clicked pixels, or covers a negative click, is then still chosen when the score
prefers it. With ``click_agreement = w > 0`` the score of proposal ``n`` for prompt ``t``
becomes ``score + w * a``, where ``a`` (in ``[-1, 1]``) is how well the mask overlaps the
prompt's positive pixels minus how much of its negative pixels it covers
(:func:`click_agreement`). The criterion trains FIND's score: the term is added in eval mode
only (and to the choice of the first mask in training's correction rounds,
:mod:`findvl.train.corrections`, as the evaluation's clicks will see it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from findvl.model.requests import VisualPrompt


def prompt_regions(
    prompts: list[list[VisualPrompt]],
    canvas: tuple[int, int],
    input_sizes: list[tuple[int, int]],
    cells: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt's positive and negative pixels as ``[B,T,h,w]`` cell coverage (0..1) on the
    padded ``canvas`` (image ``b`` filling ``input_sizes[b]`` of it) at mask resolution
    ``cells = (h, w)``; ``T`` = most prompts of a row."""
    h4, w4 = cells
    height, width = canvas
    most = max(len(row) for row in prompts)
    pos = torch.zeros(len(prompts), most, h4, w4)
    neg = torch.zeros_like(pos)
    for b, row in enumerate(prompts):
        ih, iw = input_sizes[b]
        size = (max(1, ih * h4 // height), max(1, iw * w4 // width))
        for t, prompt in enumerate(row):
            for region, out in ((prompt.positive, pos), (prompt.negative, neg)):
                if region is None:
                    continue
                cover = F.interpolate(region[None, None].float().cpu(), size=size, mode="area")
                out[b, t, : size[0], : size[1]] = cover[0, 0]
    return pos, neg


def click_agreement(masks: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``masks [B,N,h,w]`` logits, ``pos``/``neg [B,T,h,w]`` coverage -> ``[B,T,N]`` agreement.

    Positive part: the overlap coefficient ``|mask ∩ pos| / min(|mask|, |pos|)`` (soft: mask
    probabilities, cell coverage), 1 when the mask covers the prompt (a click, a scribble) or
    lies inside it (a box, which contains its object). Negative part: the fraction of the
    negative pixels the mask covers. Each is 0 without such pixels.
    """
    prob = masks.float().sigmoid()
    pos, neg = pos.to(prob), neg.to(prob)
    area = prob.flatten(2).sum(-1)[:, None, :]  # Bx1xN

    def overlap(region: torch.Tensor, by_mask: bool) -> torch.Tensor:
        total = region.flatten(2).sum(-1, keepdim=True)  # BxTx1
        inside = torch.einsum("bthw,bnhw->btn", region, prob)
        norm = torch.minimum(total, area) if by_mask else total
        return torch.where(total > 0, inside / norm.clamp(min=1e-3), torch.zeros_like(inside))

    return overlap(pos, by_mask=True) - overlap(neg, by_mask=False)


def agreeing_choice(
    logits: torch.Tensor,
    masks: torch.Tensor,
    prompts: list[list[VisualPrompt]],
    canvas: tuple[int, int],
    input_sizes: list[tuple[int, int]],
    weight: float,
) -> torch.Tensor:
    """``[B,T]`` index of the chosen proposal: argmax of ``logits [B,T,N] + weight *``
    agreement of ``masks [B,N,h,w]`` with ``prompts`` (plain argmax when ``weight`` is 0)."""
    if weight > 0:
        regions = prompt_regions(prompts, canvas, input_sizes, tuple(masks.shape[-2:]))
        logits = logits + weight * click_agreement(masks, *regions)
    return logits.argmax(-1)
