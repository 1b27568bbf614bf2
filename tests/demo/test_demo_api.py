"""Every named endpoint of the demo through gradio_client, against a live local server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from pycocotools import mask as mask_utils  # noqa: E402


@pytest.fixture(scope="module")
def demo(live_demo):
    with live_demo() as (url, service, examples):
        client = gradio_client.Client(url, verbose=False)
        yield client, service, examples


def _file(examples, k=0):
    return gradio_client.handle_file(str(examples.images[k][1]))


def _check_masks(result, size):
    assert isinstance(result["masks"], list)
    for record in result["masks"]:
        assert {"label", "score", "bbox", "area", "segmentation"} <= set(record)
        assert 0.0 <= record["score"] <= 1.0
        rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
        mask = mask_utils.decode(rle)
        assert mask.shape == size and int(mask.sum()) == record["area"]
        if record["area"]:
            x, y, w, h = record["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == (
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            )


def _picture(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_api_lists_the_five_named_endpoints(demo):
    client, _, _ = demo
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/segment", "/ground", "/click", "/interleave", "/search"} <= names


def test_segment(demo):
    client, service, examples = demo
    picture, result = client.predict(
        _file(examples), "circle\nsquare", 0.0, None, "", "", api_name="/segment"
    )
    assert result["classes"] == ["circle", "square"]
    service.predictor.set_image(examples.images[0][2])
    expected = service.predictor.segment(["circle", "square"], object_threshold=0.0).segments
    assert [r["score"] for r in result["masks"]] == [round(s["score"], 6) for s in expected]
    assert {r["category_id"] for r in result["masks"]} <= {0, 1}
    _check_masks(result, (64, 64))
    assert _picture(picture).shape[1] >= 384  # enlarged overlay


def test_segment_with_a_visual_exemplar(demo):
    client, _, examples = demo
    _, result = client.predict(
        _file(examples), "", 0.0, _file(examples, 1), "4,4,40,40", "", api_name="/segment"
    )
    assert result["classes"] == ["exemplar"]
    _check_masks(result, (64, 64))


def test_ground(demo):
    client, _, examples = demo
    _, result = client.predict(
        _file(examples), "the red circle\nthe blue square", api_name="/ground"
    )
    assert [r["label"] for r in result["masks"]] == ["the red circle", "the blue square"]
    _check_masks(result, (64, 64))


def test_click_then_a_correction_round(demo):
    client, _, examples = demo
    _, first = client.predict(_file(examples), "20,20,1", "", None, True, api_name="/click")
    assert first["round_with_previous_mask"] is False
    _check_masks(first, (64, 64))
    _, second = client.predict(
        _file(examples), "20,20,1; 50,50,0", "", None, True, api_name="/click"
    )
    assert second["round_with_previous_mask"] is True  # the session kept the last mask
    _, boxed = client.predict(_file(examples), "", "5,5,30,30", None, False, api_name="/click")
    assert boxed["round_with_previous_mask"] is False and len(boxed["masks"]) == 1


def test_interleave_with_a_region_entity(demo):
    client, _, examples = demo
    _, result = client.predict(
        _file(examples),
        "a [1]<red circle> next to a [2]<blue square>",
        _file(examples, 1),
        2,
        "",
        "20,20",
        api_name="/interleave",
    )
    assert [r["label"] for r in result["masks"]] == ["[1] red circle", "[2] (region)"]
    _check_masks(result, (64, 64))


def test_search_ranks_examples_and_uploads(demo, tmp_path):
    client, service, examples = demo
    upload = tmp_path / "upload.png"
    Image.fromarray(examples.images[0][2]).save(upload)
    gallery, result = client.predict(
        "a red circle",
        [gradio_client.handle_file(str(upload))],
        3,
        None,
        1,
        "",
        "",
        api_name="/search",
    )
    assert result["searched"] == len(service.gallery) + 1
    assert [r["rank"] for r in result["results"]] == [1, 2, 3]
    scores = [r["score"] for r in result["results"]]
    assert scores == sorted(scores, reverse=True) and len(gallery) == 3
    # the upload is a copy of example 0: both score the same
    names = {r["name"]: r["score"] for r in result["results"]}
    if "upload.png" in names and examples.images[0][0] in names:
        assert names["upload.png"] == pytest.approx(names[examples.images[0][0]], abs=1e-5)


@pytest.mark.parametrize(
    ("endpoint", "args", "message"),
    [
        ("/segment", (None, "circle", 0.5, None, "", ""), "upload an image"),
        ("/ground", ("IMG", "   "), "phrases"),
        ("/click", ("IMG", "", "", None, True), "positive"),
        ("/click", ("IMG", "900,3,1", "", None, True), "outside"),
        ("/click", ("IMG", "", "1,2,3", None, True), "box"),
        ("/interleave", ("IMG", "a [1<broken", None, 1, "", ""), "text"),
        ("/search", ("", None, 3, None, 1, "", ""), "query"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(demo, endpoint, args, message):
    client, _, examples = demo
    args = tuple(_file(examples) if a == "IMG" else a for a in args)
    with pytest.raises(Exception) as info:  # noqa: B017 - gradio_client raises AppError
        client.predict(*args, api_name=endpoint)
    text = str(info.value)
    assert message in text and "Traceback" not in text


def test_json_is_plain_json(demo):
    client, _, examples = demo
    _, result = client.predict(_file(examples), "the star", api_name="/ground")
    assert json.loads(json.dumps(result)) == result


def test_queue_is_bounded_and_uploads_are_limited(demo, tmp_path):
    client, service, examples = demo
    big = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big)  # ~1.9 MB, above the 1 MB limit of this server
    with pytest.raises(Exception) as info:  # noqa: B017 - the upload is refused
        client.predict(gradio_client.handle_file(str(big)), "the star", api_name="/ground")
    assert "size" in str(info.value).lower()


def test_build_app_bounds_the_queue(demo):
    from findvl.demo.app import build_app

    _, service, examples = demo
    app = build_app(service, examples, max_queue=3)
    assert app._queue.max_size == 3
