"""Image once, prompts many; several images and prompts in one call equal one call each."""

import pytest
import torch

from findvl.build import build_model, find_tiny_config
from findvl.model.requests import GroundedSegmentation, VisualPrompt
from findvl.model.sampler import rasterize
from findvl.predictor import FindPredictor


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(find_tiny_config()).eval()


@pytest.fixture(scope="module")
def pictures(images):
    return images([(48, 64), (40, 40), (64, 48)], seed=7)


def _same(a, b):
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    assert torch.equal(a.masks, b.logits > 0)


def test_prompts_on_a_cached_image_equal_the_plain_forward(model, pictures):
    predictor = FindPredictor(model)
    encoded = predictor.set_image(pictures[0])
    predictor.ground(["the red circle"])
    cached = encoded.cache["interface"]
    assert cached is not None
    second = predictor.ground(["the red circle", "a square"])
    assert encoded.cache["interface"] is cached  # the image side was computed once
    with torch.no_grad():
        out = model([pictures[0]], [GroundedSegmentation([["the red circle", "a square"]])])
    task = out.grounded_segmentation
    ref = out.to_original(task.best_masks()[0], 0)
    torch.testing.assert_close(second.logits, ref, atol=1e-5, rtol=0)
    plain = FindPredictor(model, cache_interface=False)
    plain.set_image(pictures[0])
    _same(plain.ground(["the red circle", "a square"]), second)
    assert "interface" not in plain.encoded.cache


def test_ground_batch_equals_one_call_per_image(model, pictures):
    predictor = FindPredictor(model)
    encoded = [predictor.encode(p) for p in pictures]
    phrases = [["the red circle"], ["a square", "grass", "the sky"], ["a blue square", "x"]]
    batched = predictor.ground_batch(encoded, phrases)
    for e, p, got in zip(encoded, phrases, batched):
        predictor.set_encoded(e)
        one = predictor.ground(p)
        assert got.masks.shape == (len(p), *e.size)
        _same(got, one)


def test_click_batch_equals_one_call_per_image(model, pictures):
    predictor = FindPredictor(model)
    encoded = [predictor.encode(p) for p in pictures]
    prompts = [
        [VisualPrompt(rasterize(e.size, points=[(5 + 3 * j, 7 + 2 * j)])) for j in range(1 + b)]
        for b, e in enumerate(encoded)
    ]
    prompts[1][0] = VisualPrompt(
        rasterize((40, 40), box=(2, 2, 20, 30)), rasterize((40, 40), points=[(30, 30)])
    )
    batched = predictor.click_batch(encoded, prompts)
    for e, p, got in zip(encoded, prompts, batched):
        predictor.set_encoded(e)
        _same(got, predictor.click(p))


def test_batch_rows_must_match_the_images(model, pictures):
    predictor = FindPredictor(model)
    encoded = [predictor.encode(p) for p in pictures[:2]]
    with pytest.raises(ValueError, match="phrases"):
        predictor.ground_batch(encoded, [["a"]])
    with pytest.raises(ValueError, match="images"):
        predictor.click_batch([], [])
