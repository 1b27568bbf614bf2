"""FindPredictor: image inputs, SAM-style predict, probabilities, caches, threads."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from findvl.build import build_model, find_tiny_config
from findvl.model.requests import GenericSegmentation, InteractiveSegmentation, VisualPrompt
from findvl.model.sampler import rasterize
from findvl.postprocess import panoptic_inference
from findvl.predictor import FindPredictor, as_image_tensor

CLASSES = ["red circle", "blue square", "grass"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(find_tiny_config()).eval()


@pytest.fixture
def predictor(model):
    return FindPredictor(model)


@pytest.fixture(scope="module")
def pictures(images):
    return images([(48, 64), (48, 64), (40, 40)], seed=3)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# ---- image inputs ---------------------------------------------------------------------------
def test_every_image_form_gives_the_same_tensor(pictures):
    ref = pictures[0]
    rgb = _hwc(ref)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], -1)
    forms = {
        "tensor": ref,
        "hwc": rgb,
        "hwc4": rgba,
        "pil": Image.fromarray(rgb),
        "uint16": rgb.astype(np.uint16) * 257,
        "float01": rgb.astype(np.float32) / 255,
        "float_tensor": ref.float(),
        "rgba_tensor": torch.from_numpy(rgba).permute(2, 0, 1),
    }
    for name, form in forms.items():
        assert torch.equal(as_image_tensor(form), ref), name
    grey = as_image_tensor(rgb[..., 0])
    assert grey.shape == (3, 48, 64) and torch.equal(grey[1], ref[0])


def test_exif_orientation_is_applied():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:5, :5] = 255  # a white corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", exif=exif)
    shown = as_image_tensor(Image.open(io.BytesIO(buffer.getvalue())))
    assert shown.shape == (3, 30, 20)  # width and height swap
    assert shown[:, :5, -5:].min() == 255  # the corner went to the top right


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 2), np.uint8), torch.zeros(2, 5, 5), np.full((4, 4), np.nan)]
)
def test_bad_image_names_the_input(predictor, bad):
    with pytest.raises(ValueError, match="image"):
        predictor.set_image(bad)


# ---- tasks ----------------------------------------------------------------------------------
def test_segment_equals_the_model_forward_and_caches_the_vocabulary(model, pictures):
    predictor = FindPredictor(model)
    for img in pictures[:2]:
        predictor.set_image(img)
        with torch.no_grad():
            out = model([img], [GenericSegmentation(CLASSES)])
        final = out.generic_segmentation.final
        masks = out.to_original(final.masks[0], 0)
        scores = final.logits[0].softmax(-1)[:, :-1].max(-1).values
        # all proposals, and about half of them: the predictor forms only the kept masks
        for threshold in (0.0, float(scores.median())):
            got = predictor.segment(CLASSES, object_threshold=threshold)
            ref = panoptic_inference(
                final.logits[0], masks, isthing=[True] * 3, object_threshold=threshold
            )
            assert torch.equal(got.segmentation, ref.segmentation)
            assert got.segments and len(got.segments) == len(ref.segments)
            for mine, theirs in zip(got.segments, ref.segments, strict=True):
                # the predictor reuses the image's object pass: scores agree to float rounding
                assert mine["score"] == pytest.approx(theirs["score"], rel=1e-5)
                assert {**mine, "score": 0} == {**theirs, "score": 0}
    misses = model.class_tables.misses
    predictor.segment(CLASSES)  # cached vocabulary
    assert model.class_tables.misses == misses
    predictor.segment(["grass"])
    predictor.segment(["grass"])
    assert model.class_tables.misses == misses + 1


def test_ground_scores_are_probabilities(predictor, pictures):
    predictor.set_image(pictures[0])
    result = predictor.ground(["the red circle", "a square"])
    assert result.masks.shape == (2, 48, 64) and result.masks.dtype == torch.bool
    assert ((result.scores > 0) & (result.scores <= 1)).all()


def test_predict_matches_click_and_unpacks_like_sam(predictor, pictures):
    predictor.set_image(pictures[0])
    size = (48, 64)
    masks, scores, logits = predictor.predict(
        point_coords=[[10, 12], [40, 30]], point_labels=[1, 0]
    )
    prompt = VisualPrompt(rasterize(size, points=[(10, 12)]), rasterize(size, points=[(40, 30)]))
    ref = predictor.click([prompt])
    assert masks.shape == (1, 48, 64) and masks.dtype == bool
    np.testing.assert_allclose(logits[0], ref.logits[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(scores, ref.scores.numpy(), atol=1e-6)
    three = predictor.predict(point_coords=[[10, 12]], multimask_output=True)
    assert three.masks.shape == (3, 48, 64)
    assert (np.diff(three.scores) <= 0).all() and 0 < three.scores.sum() <= 1 + 1e-6


def test_predict_box_and_previous_round(predictor, pictures):
    predictor.set_image(pictures[0])
    first = predictor.predict(box=[5, 5, 30, 25])
    prompt = VisualPrompt(rasterize((48, 64), box=(5, 5, 30, 25)))
    with torch.no_grad():
        direct = predictor.click([prompt], previous=torch.from_numpy(first.logits[0]))
    second = predictor.predict(box=[5, 5, 30, 25], mask_input=first.logits[0][None])
    np.testing.assert_allclose(second.logits[0], direct.logits[0].numpy(), atol=1e-5)
    small = predictor.predict(box=[5, 5, 30, 25], mask_input=np.zeros((12, 16)))
    assert small.masks.shape == (1, 48, 64)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"point_coords": [[1, 2, 3]]}, "point_coords"),
        ({"point_coords": [[1, 2]], "point_labels": [1, 1]}, "point_labels"),
        ({"point_coords": [[1, 2]], "point_labels": [0]}, "positive"),
        ({"point_coords": [[100, 2]]}, "point_coords"),
        ({"box": [1, 2, 3]}, "box"),
        ({"box": [10, 10, 5, 5]}, "box"),
        ({"box": [1, 1, 9, 9], "mask_input": np.zeros((2, 3, 4))}, "mask_input"),
        ({}, "positive"),
    ],
)
def test_predict_bad_input_names_the_argument(predictor, pictures, kwargs, field):
    predictor.set_image(pictures[0])
    with pytest.raises(ValueError, match=field):
        predictor.predict(**kwargs)


def test_no_image_is_a_clear_error(model):
    with pytest.raises(ValueError, match="set_image"):
        FindPredictor(model).predict(point_coords=[[1, 1]])


def test_retrieval_embeddings_one_forward_and_cached_queries(model, pictures, monkeypatch):
    predictor = FindPredictor(model)
    predictor.set_image(pictures[0])
    forwards = []
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: forwards.append(1) or original(*a, **k))
    image = predictor.embed_image()
    objects = predictor.embed_objects()
    assert len(forwards) == 1 and image.dim() == 1 and objects.dim() == 2
    query = predictor.embed_query("a red circle")
    predictor.set_image(pictures[1])
    assert torch.equal(predictor.embed_query("a red circle"), query)
    assert len(forwards) == 2
    fresh = FindPredictor(model)
    fresh.set_image(pictures[1])
    torch.testing.assert_close(fresh.embed_query("a red circle"), query)  # image-independent


# ---- threads --------------------------------------------------------------------------------
def test_two_threads_never_mix_results(model, pictures, point):
    predictor = FindPredictor(model)
    jobs = {
        0: (pictures[0], ["the red circle"], point((48, 64), 10, 12)),
        1: (pictures[2], ["a blue square"], point((40, 40), 20, 30)),
    }
    expected = {}
    for key, (img, phrases, prompt) in jobs.items():
        predictor.set_image(img)
        expected[key] = (predictor.ground(phrases).logits, predictor.click([prompt]).logits)
    wrong, errors = [], []
    barrier = threading.Barrier(2)

    def work(key: int) -> None:
        img, phrases, prompt = jobs[key]
        try:
            barrier.wait()
            for _ in range(20):
                predictor.set_image(img)
                got = (predictor.ground(phrases).logits, predictor.click([prompt]).logits)
                same = all(torch.equal(g, e) for g, e in zip(got, expected[key]))
                wrong.append(not same)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(wrong) == 40 and not any(wrong)


def test_interactive_request_shape_is_unchanged(model, pictures, point):
    """The request built by predict() is an ordinary InteractiveSegmentation."""
    predictor = FindPredictor(model)
    predictor.set_image(pictures[0])
    prompt = point((48, 64), 10, 12)
    with torch.no_grad():
        out = model([pictures[0]], [InteractiveSegmentation([[prompt]])])
    best = out.interactive_segmentation.final.logits[0, 0].softmax(-1).max()
    got = predictor.predict(point_coords=[[10, 12]], radius=2)
    assert got.scores[0] == pytest.approx(float(best), abs=1e-5)


def test_an_exemplar_region_classifies_its_own_proposal(model, pictures):
    predictor = FindPredictor(model)
    encoded = predictor.set_image(pictures[0])
    objects = predictor._object_pass(encoded).final["p.object"]
    masks = predictor._object_masks(encoded) > 0
    k = int(masks.flatten(1).sum(1).argmax())  # the largest proposal
    embedding = predictor.exemplar_embedding(encoded, masks[k])
    torch.testing.assert_close(embedding, objects.semantic[0, k])
    result = predictor.segment([], exemplars=embedding[None], object_threshold=0.0)
    table = torch.cat([embedding[None], predictor.class_table([])])  # exemplar, background
    with torch.no_grad():
        cos = torch.nn.functional.normalize(objects.semantic[0, k], dim=-1) @ (
            torch.nn.functional.normalize(table, dim=-1).T
        )
    assert cos[0] == pytest.approx(1.0, abs=1e-5)  # the exemplar is its own best match
    assert all(s["category"] == 0 for s in result.segments)
    with pytest.raises(ValueError, match="exemplar region"):
        predictor.exemplar_embedding(encoded, torch.zeros(48, 64, dtype=torch.bool))
