"""Click agreement: the prompt's coverage on the mask grid, the agreement of each mask, and
the interactive scores that add it at inference only."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from findvl.config import ModelConfig
from findvl.encoders.preprocess import ImageNorm, preprocess_images
from findvl.model.agreement import agreeing_choice, click_agreement, prompt_regions
from findvl.model.requests import InteractiveSegmentation, VisualPrompt
from findvl.presets import preset_config


def _prompt(size, box, negative_box=None) -> VisualPrompt:
    def region(b):
        r = torch.zeros(size, dtype=torch.bool)
        r[b[0] : b[1], b[2] : b[3]] = True
        return r

    return VisualPrompt(region(box), None if negative_box is None else region(negative_box))


def test_regions_cover_the_prompt_cells_on_the_padded_canvas() -> None:
    # a 16x24 image on a 32x32 canvas, masks at stride 4 (8x8 cells)
    batch = preprocess_images(
        [torch.zeros(3, 16, 24, dtype=torch.uint8)], ImageNorm(pad_multiple=32)
    )
    prompt = _prompt((16, 24), (0, 4, 0, 2), negative_box=(8, 16, 20, 24))
    pos, neg = prompt_regions([[prompt]], (32, 32), batch.sizes, (8, 8))
    assert pos.shape == neg.shape == (1, 1, 8, 8)
    assert pos[0, 0, 0, 0] == pytest.approx(0.5)  # half of the first 4x4 cell
    assert pos.sum() == pytest.approx(8 / 16)  # 8 pixels of 16 per cell
    assert neg[0, 0, 2:4, 5].tolist() == [1.0, 1.0] and neg.sum() == pytest.approx(2.0)
    assert pos[..., 4:, :].sum() == 0 and pos[..., 6:].sum() == 0  # nothing on the padding


def test_agreement_is_positive_overlap_minus_negative_coverage() -> None:
    pos = torch.zeros(1, 2, 4, 4)
    neg = torch.zeros(1, 2, 4, 4)
    pos[0, 0, 0, 0] = 1.0  # prompt 0: a click on cell (0, 0) and a negative click on (3, 3)
    neg[0, 0, 3, 3] = 1.0
    pos[0, 1, :2, :2] = 1.0  # prompt 1: a box over the top-left 2x2 cells
    masks = torch.full((1, 4, 4, 4), -20.0)
    masks[0, 0, 0, 0] = 20.0  # covers the click only
    masks[0, 1] = 20.0  # covers everything, the negative click too
    masks[0, 2, :2, :2] = 20.0  # fills the box
    masks[0, 3, 0, 1] = 20.0  # one cell inside the box, beside the click
    agreement = click_agreement(masks, pos, neg)
    expected = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    torch.testing.assert_close(agreement, expected, atol=1e-4, rtol=0)
    half = torch.full((1, 1, 4, 4), -20.0)
    half[0, 0, 0, :2] = 20.0  # covers half of a 2-cell scribble, and nothing else
    scribble = torch.zeros(1, 1, 4, 4)
    scribble[0, 0, 0, 1:3] = 1.0
    torch.testing.assert_close(
        click_agreement(half, scribble, torch.zeros_like(scribble)),
        torch.tensor([[[0.5]]]),
        atol=1e-4,
        rtol=0,
    )


def _model(weight: float):
    from findvl.build import build_model

    config: ModelConfig = preset_config("find_tiny")
    conventions = dataclasses.replace(config.conventions, click_agreement=weight)
    with torch.random.fork_rng():  # the same weights for both models, the global state kept
        torch.manual_seed(0)
        return build_model(dataclasses.replace(config, conventions=conventions))


def test_interactive_scores_add_the_agreement_at_inference_only(images) -> None:
    imgs = images([(64, 64)])
    request = [InteractiveSegmentation([[_prompt((64, 64), (20, 26, 30, 36), (0, 8, 0, 8))]])]
    plain, weighted = _model(0.0).eval(), _model(5.0).eval()
    with torch.no_grad():
        base = plain(imgs, request, generator=torch.Generator().manual_seed(0))
        out = weighted(imgs, request, generator=torch.Generator().manual_seed(0))
    task, ref = out.interactive_segmentation.final, base.interactive_segmentation.final
    batch = preprocess_images(imgs, weighted.vision.norm)
    canvas = tuple(batch.pixels.shape[-2:])
    cells = tuple(task.masks.shape[-2:])
    regions = prompt_regions(request[0].prompts, canvas, batch.sizes, cells)
    expected = ref.logits + 5.0 * click_agreement(ref.masks, *regions)
    torch.testing.assert_close(task.masks, ref.masks)
    torch.testing.assert_close(task.logits, expected)
    assert not torch.equal(task.logits, ref.logits)
    # training: FIND's score, unchanged
    with torch.no_grad():
        train_out = weighted.train()(imgs, request, generator=torch.Generator().manual_seed(0))
        train_ref = plain.train()(imgs, request, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        train_out.interactive_segmentation.final.logits,
        train_ref.interactive_segmentation.final.logits,
    )


def test_negative_weight_is_rejected() -> None:
    config = preset_config("find_tiny")
    bad = dataclasses.replace(
        config, conventions=dataclasses.replace(config.conventions, click_agreement=-1.0)
    )
    with pytest.raises(ValueError, match="conventions.click_agreement"):
        bad.validate()


def test_agreeing_choice_prefers_the_mask_under_the_click() -> None:
    prompt = _prompt((8, 8), (0, 2, 0, 2))  # a click in the top-left corner
    masks = torch.full((1, 2, 4, 4), -20.0)
    masks[0, 0, 2:, 2:] = 20.0  # elsewhere, but with the higher learned score
    masks[0, 1, :2, :2] = 20.0  # under the click
    logits = torch.tensor([[[3.0, 1.0]]])
    canvas, sizes = (8, 8), [(8, 8)]
    assert agreeing_choice(logits, masks, [[prompt]], canvas, sizes, 0.0).tolist() == [[0]]
    assert agreeing_choice(logits, masks, [[prompt]], canvas, sizes, 30.0).tolist() == [[1]]
