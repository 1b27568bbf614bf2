"""Bad inputs, generated here: each gets one clear line (exit 2) or the right result, never a
hang, a traceback or a silently wrong answer. Images, prompts, dataset files, prediction files,
command-line values; checkpoints, servers and concurrency are in test_bad_inputs_runs.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findvl.cli import main
from findvl.config import apply_overrides
from findvl.data.readers.coco import read_panoptic, read_refs
from findvl.images import DEFAULT_MAX_PIXELS, ImageError, read_image, to_rgb_array
from findvl.jsonio import load_json
from findvl.metrics.grounding import evaluate_grounding
from findvl.metrics.instances import evaluate_instances
from findvl.metrics.io import rle_from_json, rle_to_json
from findvl.train.config import TrainConfig


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of ``findvl ARGV`` (argparse errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # no bars
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- images ------------------------------------------------------------------------------------


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I;16")
    assert read_image(tmp_path / "a.png")[0, :, 0].tolist() == [0, 100, 255]


def test_float_tiff_is_scaled_not_black(tmp_path):
    Image.fromarray(np.full((3, 4), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert (read_image(tmp_path / "f.tif") == 128).all()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[0, 0] = 255  # top-left in the stored frame
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees clockwise
    image.save(tmp_path / "r.png", exif=exif)
    shown = read_image(tmp_path / "r.png")
    assert shown.shape == (20, 10, 3)
    assert shown[0, -1].tolist() == [255, 255, 255]  # the stored top-left is now top-right


def test_huge_small_file_is_refused_before_decoding(tmp_path, capsys):
    Image.new("L", (9000, 9000)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 200_000
    with pytest.raises(ImageError, match="above the limit of 25000000"):
        read_image(tmp_path / "big.png")
    code, err = _run(capsys, ["segment", str(tmp_path / "big.png"), "--checkpoint", "nowhere"])
    assert code == 2 and "--max-pixels" in _one_line(err) and "big.png" in err
    assert DEFAULT_MAX_PIXELS == 25_000_000


def test_decompression_bomb_is_one_line(tmp_path, capsys, monkeypatch):
    Image.new("L", (2000, 2000)).save(tmp_path / "bomb.png")
    monkeypatch.setenv("FINDVL_MAX_PIXELS", "25000000")  # restored after --max-pixels sets it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # PIL's own bomb limit
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(tmp_path / "bomb.png")
    code, err = _run(
        capsys,
        ["--max-pixels", "10000000", "segment", str(tmp_path / "bomb.png"), "--checkpoint", "x"],
    )
    assert code == 2 and "decompression bomb" in _one_line(err)


@pytest.mark.parametrize(
    "content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40], ids=str
)
def test_unreadable_image_names_the_file(tmp_path, content):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ImageError, match="x.png"):
        read_image(tmp_path / "x.png")


def test_truncated_png_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.png"):
        read_image(tmp_path / "t.png")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_are_refused(bad):
    array = np.zeros((4, 4, 3), np.float32)
    array[1, 2, 0] = bad
    with pytest.raises(ImageError, match="finite"):
        to_rgb_array(array)


def test_arrays_of_every_kind_become_rgb_uint8():
    assert to_rgb_array(np.full((2, 3), 65535, np.uint16)).tolist() == [[[255] * 3] * 3] * 2
    assert to_rgb_array(np.ones((2, 2), bool)).max() == 255
    rgba = to_rgb_array(np.zeros((2, 2, 4), np.uint8))
    assert rgba.shape == (2, 2, 3) and rgba.dtype == np.uint8
    assert to_rgb_array(np.array([[0, 128, 255]])).tolist() == [[[0] * 3, [128] * 3, [255] * 3]]
    with pytest.raises(ImageError, match="outside 0..255"):
        to_rgb_array(np.array([[0, 300]]))
    with pytest.raises(ImageError, match="HxW"):
        to_rgb_array(np.zeros((2, 2, 2, 2)))


# --- prompts and other command-line values ----------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--point", "10", "--point"),
        ("--point", "nan,3", "--point"),
        ("--box", "1,2,3", "--box"),
        ("--negative", "a,b", "--negative"),
    ],
)
def test_bad_click_names_the_flag(tmp_path, capsys, flag, value, named):
    Image.new("RGB", (8, 8)).save(tmp_path / "i.png")
    argv = ["click", str(tmp_path / "i.png"), "--checkpoint", "nowhere", "--point", "1,1"]
    code, err = _run(capsys, [*argv, flag, value])
    assert code == 2 and named in _one_line(err) and value in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["train", "--data", ".", "--out", "r", "--steps", "0"], "--steps"),
        (["train", "--data", ".", "--out", "r", "--epochs", "0"], "--epochs"),
        (["train", "--data", ".", "--out", "r", "--batch-size", "-1"], "--batch-size"),
        (["--max-pixels", "0", "info"], "--max-pixels"),
    ],
)
def test_bad_counts_are_refused_by_the_parser(capsys, argv, named):
    code, err = _run(capsys, argv)
    assert code == 2 and named in _one_line(err)


@pytest.mark.parametrize("flag", ["--backoff", "--timeout", "--temperature"])
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_engine_numbers_must_be_finite(capsys, flag, value):
    argv = ["data", "engine", "--data", ".", "--split", "s", "--llm-endpoint", "http://x"]
    code, err = _run(capsys, [*argv, "--model", "m", "--out", "o.json", flag, value])
    assert code == 2 and flag in _one_line(err)


def test_engine_out_that_is_a_directory_fails_before_any_request(tmp_path, capsys):
    argv = ["data", "engine", "--data", str(tmp_path), "--split", "val", "--model", "m"]
    code, err = _run(
        capsys, [*argv, "--llm-endpoint", "http://127.0.0.1:9", "--out", str(tmp_path)]
    )
    assert code == 2 and "is a directory" in _one_line(err)


@pytest.mark.parametrize(
    ("override", "named"),
    [("optim.lr=fast", "optim.lr"), ("seed=1.5", "seed"), ("optim.lr=NaN", "optim.lr")],
)
def test_set_values_of_the_wrong_type_name_the_key(tmp_path, capsys, override, named):
    with pytest.raises(ValueError, match=named):
        apply_overrides(TrainConfig(), [override])
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", override]
    code, err = _run(capsys, argv)
    assert code == 2 and named in _one_line(err)


def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--device", "cuda"]
    code, err = _run(capsys, argv)
    assert code == 2 and "CUDA is not available" in _one_line(err)


# --- dataset files ----------------------------------------------------------------------------


def _panoptic(tmp_path: Path, file_name: str) -> Path:
    ann = {"image_id": 1, "file_name": "1.png", "segments_info": []}
    data = {
        "images": [{"id": 1, "file_name": file_name, "height": 4, "width": 4}],
        "annotations": [ann],
        "categories": [{"id": 1, "name": "thing", "isthing": 1}],
    }
    path = tmp_path / "panoptic.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.png", "a/../../b.png"])
def test_file_names_outside_the_root_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.delenv("FINDVL_ALLOW_OUTSIDE_ROOT", raising=False)
    path = _panoptic(tmp_path, name)
    with pytest.raises(ValueError, match="--allow-outside-root"):
        read_panoptic(path, tmp_path, tmp_path / "images")
    monkeypatch.setenv("FINDVL_ALLOW_OUTSIDE_ROOT", "1")
    images, _ = read_panoptic(path, tmp_path, tmp_path / "images")
    assert images[0].image_path == tmp_path / "images" / name


def test_refs_tokens_must_be_a_list_of_strings(tmp_path):
    sentence = {"sent": "the dog", "sent_id": 1, "tokens": 5}
    ref = {"ref_id": 1, "image_id": 1, "ann_id": 1, "category_id": 1, "sentences": [sentence]}
    (tmp_path / "refs.json").write_text(json.dumps([ref]))
    with pytest.raises(ValueError, match=r"sentences\[0\]\.tokens"):
        read_refs(tmp_path / "refs.json")


def test_deeply_nested_json_is_one_error(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_json(tmp_path / "deep.json")
    # as the metric modules read it
    with pytest.raises(ValueError, match="deep.json: JSON nested too deeply"):
        evaluate_grounding(tmp_path / "deep.json", tmp_path / "deep.json")


# --- prediction files -------------------------------------------------------------------------


def test_overrunning_rle_is_refused_quickly(tmp_path, capsys):
    bad = {"size": [64, 64], "counts": "Pm3:Pm30"}
    with pytest.raises(ValueError, match="run lengths sum to"):
        rle_from_json(bad, "pred")
    record = {"image_id": 1, "entity_id": 1, "segmentation": bad}
    for name in ("gt.json", "pred.json"):
        (tmp_path / name).write_text(json.dumps([record]))
    start = time.monotonic()
    code, err = _run(
        capsys,
        [
            "eval",
            "grounding",
            "--gt",
            str(tmp_path / "gt.json"),
            "--pred",
            str(tmp_path / "pred.json"),
        ],
    )
    assert code == 2 and "counts" in _one_line(err)
    assert time.monotonic() - start < 10


def _instances(tmp_path: Path, annotations: list[dict], records: list[dict]) -> tuple[Path, Path]:
    gt = {
        "images": [{"id": 1, "height": 8, "width": 8}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": annotations,
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(records))
    return tmp_path / "gt.json", tmp_path / "pred.json"


def _square(size: int = 8) -> dict:
    mask = np.zeros((size, size), bool)
    mask[2:6, 2:6] = True
    return rle_to_json(mask)


def _ann(i: int, **extra) -> dict:
    return {
        "id": i,
        "image_id": 1,
        "category_id": 1,
        "bbox": [2, 2, 4, 4],
        "area": 16,
        "segmentation": _square(),
        **extra,
    }


def _pred(**extra) -> dict:
    return {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": _square(), **extra}


@pytest.mark.parametrize(
    ("annotations", "records", "message"),
    [
        ([_ann(1)], [_pred(segmentation=_square(16))], "does not match the image"),
        ([_ann(1), _ann(1)], [_pred()], "duplicate annotation id 1"),
        ([_ann(1)], [_pred(score=float("nan"))], "finite"),
        ([_ann(1)], [{**_pred(), "segmentation": "abc"}], "expected dict"),
        ([_ann(1, segmentation="abc")], [_pred()], "expected polygons"),
        ([_ann(1, bbox=[0, 0, -3, 4])], [_pred()], "width and height must be >= 0"),
        (
            [_ann(1)],
            [{k: v for k, v in _pred(bbox=[1, 1, -2, 2]).items() if k != "segmentation"}],
            "width and height must be >= 0",
        ),
    ],
    ids=[
        "rle-size",
        "dup-gt-id",
        "nan-score",
        "string-pred-segm",
        "string-gt-segm",
        "negative-gt-box",
        "negative-pred-box",
    ],
)
def test_bad_instance_files_are_refused(tmp_path, annotations, records, message):
    gt, pred = _instances(tmp_path, annotations, records)
    with pytest.raises(ValueError, match=message):
        evaluate_instances(gt, pred)


def test_good_instance_file_still_scores(tmp_path):
    gt, pred = _instances(tmp_path, [_ann(1)], [_pred()])
    ap = evaluate_instances(gt, pred).segm.AP
    assert ap == pytest.approx(100.0)


def test_duplicated_panoptic_annotation_is_refused(tmp_path, capsys):
    ids = np.zeros((4, 4, 3), np.uint8)
    ids[:2, :, 0] = 1
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
        Image.fromarray(ids).save(tmp_path / folder / "1.png")
    ann = {"image_id": 1, "file_name": "1.png", "segments_info": [{"id": 1, "category_id": 1}]}
    cats = [{"id": 1, "name": "a", "isthing": 1}]
    (tmp_path / "gt.json").write_text(json.dumps({"annotations": [ann], "categories": cats}))
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": [ann, ann]}))
    argv = ["eval", "panoptic", "--gt-json", str(tmp_path / "gt.json"), "--gt-dir"]
    argv += [str(tmp_path / "gt"), "--pred-json", str(tmp_path / "pred.json")]
    code, err = _run(capsys, [*argv, "--pred-dir", str(tmp_path / "pred")])
    assert code == 2 and "already annotated" in _one_line(err)


def test_huge_semantic_label_is_refused_without_allocating(tmp_path, capsys):
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
        labels = np.zeros((4, 4), np.uint16)
        labels[0, 0] = 60000 if folder == "pred" else 1
        Image.fromarray(labels).save(tmp_path / folder / "a.png")
    argv = ["eval", "semantic", "--gt-dir", str(tmp_path / "gt"), "--pred-dir"]
    code, err = _run(capsys, [*argv, str(tmp_path / "pred")])
    line = _one_line(err)
    assert code == 2 and "label 60000" in line and "a.png" in line


def test_grounding_still_scores_good_masks(tmp_path):
    record = {"image_id": 1, "entity_id": 1, "segmentation": _square()}
    for name in ("gt.json", "pred.json"):
        (tmp_path / name).write_text(json.dumps([record]))
    result = evaluate_grounding(tmp_path / "gt.json", tmp_path / "pred.json")
    assert result.cIoU == pytest.approx(100.0)
