"""The demo's page inputs and service, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from findvl.demo.parsing import (
    DemoInputError,
    editor_strokes,
    parse_box,
    parse_points,
    require_image,
    split_list,
    split_phrases,
)
from findvl.demo.records import bbox_xywh, mask_records


def test_text_fields():
    assert split_list("a, b ,,c", "v") == ["a", "b", "c"]
    assert split_list("red, round thing\nsquare", "v") == ["red, round thing", "square"]
    assert split_phrases("The red circle. A blue square! ") == ["The red circle", "A blue square"]
    assert split_phrases("the red circle\nthe cross") == ["the red circle", "the cross"]
    assert parse_box(" 1, 2 ,3,4") == (1.0, 2.0, 3.0, 4.0) and parse_box("") is None
    assert parse_points("3,4; 5,6,0\n7 8 1") == [(3, 4, 1), (5, 6, 0), (7, 8, 1)]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: split_list(" , ", "vocabulary"), "vocabulary"),
        (lambda: parse_box("1,2,3"), "box"),
        (lambda: parse_box("5,5,1,1"), "x0 < x1"),
        (lambda: parse_box("1,2,3,nan"), "box"),
        (lambda: parse_points("1,2,5"), "label"),
        (lambda: parse_points("a,b"), "points"),
        (lambda: require_image(None), "upload an image"),
    ],
)
def test_bad_fields_name_themselves(call, field):
    with pytest.raises(DemoInputError, match=field):
        call()


def test_uploads_are_decoded_and_broken_ones_named_without_the_server_path(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[1, 2] = 200
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    assert np.array_equal(require_image(str(tmp_path / "ok.png")), rgb)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DemoInputError) as info:
        require_image(str(tmp_path / "broken.png"))
    assert "broken.png" in str(info.value) and str(tmp_path) not in str(info.value)


def test_editor_strokes():
    layer = np.zeros((4, 6, 4), np.uint8)
    layer[1, 2, 3] = 255
    strokes = editor_strokes({"background": None, "layers": [layer], "composite": None}, (4, 6))
    assert strokes.sum() == 1 and strokes[1, 2]
    assert editor_strokes({"layers": [np.zeros((4, 6, 4), np.uint8)]}, (4, 6)) is None
    with pytest.raises(DemoInputError, match="canvas"):
        editor_strokes({"layers": [layer]}, (5, 6))


def test_records_are_coco():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:7] = True
    assert bbox_xywh(mask) == [3.0, 2.0, 4.0, 2.0]
    (record,) = mask_records(mask[None], [0.25], ["thing"], [3])
    assert record["area"] == 8 and record["category_id"] == 3 and record["score"] == 0.25
    assert record["segmentation"]["size"] == [6, 8]


@pytest.fixture(scope="module")
def service(tiny_service):
    return tiny_service(images=2)


def test_service_answers_and_caches_images(service, monkeypatch):
    svc, examples = service
    image = examples.images[0][2]
    encodes = []
    original = svc.predictor.encode
    monkeypatch.setattr(svc.predictor, "encode", lambda x: encodes.append(1) or original(x))
    first = svc.click(image, "10,10,1")
    again = svc.click(image.copy(), "10,10,1; 30,30,0", "", None, first.logits)
    assert len(encodes) == 1  # the same pixels are encoded once
    assert again.result["round_with_previous_mask"] and first.logits.shape == (64, 64)
    stroke = np.zeros((64, 64), bool)
    stroke[5:9, 5:30] = True
    assert len(svc.click(image, "", "", stroke).result["masks"]) == 1
    with pytest.raises(DemoInputError, match="positive"):
        svc.click(image, "10,10,0")


def test_interleave_needs_entities(service):
    svc, examples = service
    with pytest.raises(DemoInputError, match="entity"):
        svc.interleave(examples.images[0][2], "no entities here")
    answer = svc.interleave(examples.images[0][2], "the [3]<cross> and the [4]<star>")
    assert [r["label"] for r in answer.result["masks"]] == ["[3] cross", "[4] star"]


def test_search_through_an_index(service, tmp_path):
    from findvl.demo.search import search
    from findvl.index import AnnSettings, FindIndex, ModelFingerprint
    from findvl.index.build import build_index

    svc, examples = service
    folder = examples.images[0][1].parent
    index = FindIndex.create(
        ModelFingerprint.of_model(svc.predictor.model),
        tmp_path / "index",
        ann=AnnSettings("flat"),
        collection=str(folder),
        model=svc.predictor.model,
    )
    build_index(index, folder, progress=False)
    indexed = type(svc)(svc.predictor, svc.class_names, svc.isthing, gallery=[], index=index)
    gallery, result = search(indexed, "a red circle", None, 2)
    assert result["index"] is True and len(result["results"]) == 2
    assert {r["name"] for r in result["results"]} <= {name for name, _, _ in examples.images}
    assert len(gallery) == 2  # pictures found under the index's collection folder
    expected = index.search("a red circle", k=2)
    assert [r["name"] for r in result["results"]] == [h.image for h in expected]


def test_large_uploads_are_downscaled(service):
    svc, _ = service
    big = np.zeros((300, 1500, 3), np.uint8)
    big[100:200, 600:900] = 255
    rgb, encoded = svc.encode(big)
    assert rgb.shape == (205, 1024, 3) and encoded.size == (205, 1024)
    answer = svc.ground(big, "the white square")
    assert answer.result["masks"][0]["segmentation"]["size"] == [205, 1024]
