"""Interactive correction rounds during training (the official ``rand_iter_num`` iteration).

Evaluation clicks several rounds: every round adds a click on the larger error region
(positive on a missed part, negative on a false positive) and feeds the previous round's mask
logits to the spatial memory. A model trained only on first prompts has never seen a negative
token nor a filled memory, so corrections make its masks worse. With probability
``probability`` a training batch therefore gets one no-grad interactive pass on the first prompt
of every image; the simulated correction click and that pass's mask logits become the prompt and
the spatial memory of the batch's interactive targets. The pass chooses its mask as inference
does, with the model's click agreement (:mod:`findvl.model.agreement`), so the corrections
trained on follow the first masks that evaluation and users will correct.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from findvl.data.clicks import clicks_to_masks, next_click
from findvl.data.training import TrainExample
from findvl.model.agreement import agreeing_choice
from findvl.model.find import FindModel
from findvl.model.requests import InteractiveSegmentation, VisualPrompt
from findvl.model.sequence_types import ImageFeatures


def correction_round(
    model: FindModel,
    examples: list[TrainExample],
    *,
    generator: torch.Generator | None = None,
    radius: float = 3.0,
    features: ImageFeatures | None = None,
) -> list[TrainExample]:
    """Examples whose interactive target is the first prompt plus one correction click.

    Args:
        model: the model being trained (run without gradient, in its current mode).
        examples: a batch; images without prompts are returned unchanged.
        generator: random source of the pass's prompt points.
        radius: click disk radius in pixels (as the evaluation's click simulator).
        features: the batch's images as the model encodes them (all examples, in order):
            the pass reuses them when every example has a prompt, instead of encoding again.

    Returns:
        new examples with ``prompts = [first prompt]``, ``prompt_negatives = [negative clicks]``,
        ``prompt_segments = [its segment]`` and ``previous`` = the pass's ``[h,w]`` mask logits.
    """
    rows = [i for i, ex in enumerate(examples) if ex.prompts]
    if not rows:
        return examples
    request = InteractiveSegmentation([[VisualPrompt(examples[i].prompts[0])] for i in rows])
    shared = features is not None and len(rows) == len(examples)
    images = features if shared else [examples[i].image for i in rows]
    with torch.no_grad():
        out = model(images, [request], generator=generator)
    task = out.interactive_segmentation
    # the first mask is chosen as at inference (eval mode adds the click agreement itself)
    weight = model.conventions.click_agreement if model.training else 0.0
    index = agreeing_choice(
        task.final.logits, task.final.masks, request.prompts, out.canvas, out.input_sizes, weight
    )
    best = task.best_masks(index)  # BxTxhxw
    result = list(examples)
    for b, i in enumerate(rows):
        ex = examples[i]
        logits = out.to_original(best[b, :1], b)[0].float().cpu()
        gt = ex.masks[ex.prompt_segments[0]].numpy()
        positive = ex.prompts[0].clone()
        negative = torch.zeros_like(positive)
        click = next_click(gt, logits.numpy() > 0)
        if click is not None:
            pos, neg = clicks_to_masks([click], gt.shape, radius=radius)
            positive |= torch.from_numpy(pos & gt)
            negative |= torch.from_numpy(neg & ~gt)
        result[i] = replace(
            ex,
            prompts=[positive],
            prompt_negatives=[negative if negative.any() else None],
            prompt_segments=[ex.prompt_segments[0]],
            previous=logits,
        )
    return result


def wants_correction(seed: int, step: int, micro: int, probability: float) -> bool:
    """Whether micro-batch ``(step, micro)`` gets a correction round: a pure function of its
    arguments, the same on every process (so they run the same tasks)."""
    if probability <= 0:
        return False
    return bool(np.random.default_rng([seed, step, micro, 7]).random() < probability)
