"""Several images, several prompts per image, one interface forward.

Each image is encoded on its own (as :meth:`FindPredictor.set_image` does, so the vision
encoder never sees another image's padding); their features are padded to one canvas
(:func:`findvl.model.image_cache.stack_features`, padding marked invalid) and one forward
answers every image's prompts. Each image's masks are cut back to its own canvas before they
are resized to the image, and each image draws its prompt points from its own random stream,
seeded as a call per image seeds it, so the results equal one call per image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from findvl.model.image_cache import stack_caches, stack_features
from findvl.model.requests import GroundedSegmentation, InteractiveSegmentation, VisualPrompt
from findvl.model.sequence_types import ImageFeatures
from findvl.predictor.results import EncodedImage, MaskResult

if TYPE_CHECKING:
    from findvl.predictor.core import FindPredictor


def _check_rows(encoded: list, rows: list, field: str) -> None:
    if len(encoded) == 0:
        raise ValueError("images: the batch is empty")
    if len(rows) != len(encoded):
        raise ValueError(f"{field}: {len(rows)} entries for {len(encoded)} images")


def _results(predictor: FindPredictor, feats: list[ImageFeatures], task_out, counts):
    logits = task_out.final.logits  # BxTxN
    best = task_out.best_masks()  # BxTxhxw on the common canvas
    results: list[MaskResult] = []
    for b, (f, n) in enumerate(zip(feats, counts)):
        h, w = f.pixel.mask_features.shape[-2:]  # the image's own mask grid
        mask_logits = f.to_original(best[b, :n, :h, :w], 0)
        probs = logits[b, :n].float().softmax(-1)
        results.append(MaskResult(mask_logits > 0, mask_logits, probs.max(-1).values))
    return results


def _run(predictor: FindPredictor, encoded: list[EncodedImage], request, name: str, counts):
    with predictor._lock, torch.no_grad():
        feats = [e.features for e in encoded]
        cache = stack_caches([predictor.interface_cache(e) for e in encoded], feats)
        # one stream per image, seeded as a call per image seeds it
        generators = [torch.Generator().manual_seed(predictor.seed) for _ in feats]
        out = predictor.model(
            stack_features(feats),
            [request],
            generator=generators,
            dense_masks=False,
            image_cache=cache,
        )
        return _results(predictor, feats, getattr(out, name), counts)


def ground_batch(
    predictor: FindPredictor, encoded: list[EncodedImage], phrases: list[list[str]]
) -> list[MaskResult]:
    """Per image, one mask per phrase: ``phrases[b]`` on ``encoded[b]``."""
    _check_rows(encoded, phrases, "phrases")
    request = GroundedSegmentation([list(p) for p in phrases])
    return _run(predictor, encoded, request, "grounded_segmentation", [len(p) for p in phrases])


def click_batch(
    predictor: FindPredictor, encoded: list[EncodedImage], prompts: list[list[VisualPrompt]]
) -> list[MaskResult]:
    """Per image, one mask per visual prompt: ``prompts[b]`` on ``encoded[b]``."""
    _check_rows(encoded, prompts, "prompts")
    request = InteractiveSegmentation([list(p) for p in prompts])
    return _run(predictor, encoded, request, "interactive_segmentation", [len(p) for p in prompts])
