"""`findvl eval ...`: --json prints one object with the documented keys; tables; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import findvl.cli
from findvl.metrics.io import rle_to_json
from findvl.panoptic_ids import id2rgb


@pytest.fixture(autouse=True)
def eval_command(monkeypatch):
    monkeypatch.setattr(findvl.cli, "COMMANDS", {"eval": ("findvl.cli.eval", "evaluate")})


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = findvl.cli.main(["eval", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(argv: list[str], capsys) -> dict:
    code, out, _ = run([*argv, "--json"], capsys)
    assert code == 0
    return json.loads(out)  # exactly one JSON document, nothing else on stdout


def square(side: int = 10) -> np.ndarray:
    mask = np.zeros((20, 20), bool)
    mask[:side, :side] = True
    return mask


def test_instances(tmp_path, capsys):
    gt = {
        "images": [{"id": 1, "width": 20, "height": 20}, {"id": 2, "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 100.0,
                "bbox": [0, 0, 10, 10],
                "segmentation": rle_to_json(square()),
            }
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": rle_to_json(square())}]
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    argv = ["instances", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]
    out = run_json(argv, capsys)
    assert set(out) == {"segm", "bbox", "num_images", "num_predictions"} and out["bbox"] is None
    assert set(out["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert out["segm"]["AP"] == pytest.approx(100.0)
    code, table, _ = run(argv, capsys)
    lines = table.splitlines()
    assert code == 0 and lines[0].split() == ["task", "metric", "value"]
    assert [line.split()[1] for line in lines[2:8]] == [f"instance.{k}" for k in out["segm"]]
    assert lines[2].split() == ["generic_segmentation", "instance.AP", "100.00"]
    assert "instance_bbox.AP" not in table and "images: 2  predictions: 1" in table


def test_panoptic(tmp_path, capsys):
    ids = np.zeros((8, 8), np.int64)
    ids[:4] = 5
    for name in ("gt", "pred"):
        (tmp_path / name).mkdir()
        Image.fromarray(id2rgb(ids)).save(tmp_path / name / "a.png")
        data = {
            "annotations": [
                {
                    "image_id": 1,
                    "file_name": "a.png",
                    "segments_info": [{"id": 5, "category_id": 1}],
                }
            ],
            "categories": [{"id": 1, "name": "cat", "isthing": 1}],
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    argv = [
        "panoptic",
        "--gt-json",
        str(tmp_path / "gt.json"),
        "--gt-dir",
        str(tmp_path / "gt"),
        "--pred-json",
        str(tmp_path / "pred.json"),
        "--pred-dir",
        str(tmp_path / "pred"),
    ]
    out = run_json(argv, capsys)
    assert set(out) == {"All", "Things", "Stuff", "per_class", "num_images"}
    assert out["All"] == {"PQ": 100.0, "SQ": 100.0, "RQ": 100.0, "n": 1}
    assert out["Stuff"]["n"] == 0 and out["per_class"][0]["name"] == "cat"
    code, table, _ = run([*argv, "--per-class"], capsys)
    assert code == 0 and "panoptic.PQ_things" in table and "cat" in table
    assert "categories: 1 (things 1, stuff 0)" in table


def test_semantic(tmp_path, capsys):
    for name in ("gt", "pred"):
        (tmp_path / name).mkdir()
        Image.fromarray(square().astype(np.uint8)).save(tmp_path / name / "a.png")
    out = run_json(
        ["semantic", "--gt-dir", str(tmp_path / "gt"), "--pred-dir", str(tmp_path / "pred")], capsys
    )
    assert set(out) == {
        "mIoU",
        "fwIoU",
        "pixel_accuracy",
        "mean_accuracy",
        "per_class_iou",
        "num_classes",
        "num_images",
    }
    assert out["mIoU"] == 100.0 and out["num_classes"] == 2


def test_grounding(tmp_path, capsys):
    records = [{"image_id": 1, "entity_id": 0, "segmentation": rle_to_json(square())}]
    (tmp_path / "gt.json").write_text(json.dumps(records))
    records[0]["segmentation"] = rle_to_json(square(5))
    (tmp_path / "pred.json").write_text(json.dumps(records))
    out = run_json(
        ["grounding", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")],
        capsys,
    )
    assert set(out) == {"cIoU", "mIoU", "precision", "num_entities", "num_missing"}
    assert out["cIoU"] == pytest.approx(25.0) and out["precision"]["P@0.5"] == 0.0


def test_retrieval(tmp_path, capsys):
    np.savez(
        tmp_path / "s.npz",
        scores=np.eye(3),
        query_ids=np.arange(3),
        gallery_ids=np.array(["a", "b", "c"]),
    )
    (tmp_path / "gt.json").write_text(json.dumps({"0": ["a"], "1": ["b"], "2": ["a"]}))
    out = run_json(
        ["retrieval", "--scores", str(tmp_path / "s.npz"), "--gt", str(tmp_path / "gt.json")],
        capsys,
    )
    assert {"IR@1", "IR@5", "IR@10", "TR@1", "TR@5", "TR@10", "num_queries"} <= set(out)
    assert out["IR@1"] == pytest.approx(200 / 3) and out["num_tr_queries"] == 2


def test_errors_are_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "gt.json").write_text("[]")
    (tmp_path / "pred.json").write_text(json.dumps([{"image_id": 1, "entity_id": 0}]))
    code, out, err = run(
        ["grounding", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")],
        capsys,
    )
    assert code == 2 and out == ""
    assert err.strip() == "findvl eval: error: pred.json: [0]: missing field 'segmentation'"
    code, _, err = run(["grounding", "--gt", str(tmp_path / "no.json"), "--pred", "x"], capsys)
    assert code == 2 and "no.json" in err


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        findvl.cli.main(["eval", "-h"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for name in ("instances", "panoptic", "semantic", "grounding", "retrieval"):
        assert name in help_text
