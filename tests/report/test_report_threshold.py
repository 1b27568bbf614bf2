"""One panoptic class-score threshold for evaluation, the report and ``findvl segment``."""

import inspect
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from findvl import postprocess, report
from findvl.cli import build_parser, main
from findvl.cli import predict as predict_cli
from findvl.postprocess import OBJECT_THRESHOLD, panoptic_inference
from findvl.predictor import FindPredictor


class FixedPredictor:
    """Two disjoint proposals with class scores of about 0.9 and 0.6 (``segment`` only)."""

    def __init__(self):
        self.calls = []

    def segment(self, classes, *, isthing=None, object_threshold):
        self.calls.append(object_threshold)
        probs = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.6, 0.35]])  # 2 classes + no object
        masks = torch.full((2, 8, 8), -10.0)
        masks[0, :4], masks[1, 4:] = 10.0, 10.0
        return panoptic_inference(
            probs.log(), masks, isthing=[True, True], object_threshold=object_threshold
        )


@pytest.fixture
def segment(monkeypatch, tmp_path, capsys):
    predictor = FixedPredictor()
    run = SimpleNamespace(class_names=["circle", "square"], isthing=[True, True])
    image = np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(predict_cli, "_load", lambda args: (image, run, predictor))

    def call(*flags: str) -> dict:
        argv = ["segment", str(tmp_path / "x.png"), "--checkpoint", str(tmp_path)]
        assert main([*argv, "--out", str(tmp_path / "seg"), *flags]) == 0
        printed = json.loads(capsys.readouterr().out)
        labels = [r["label"] for r in json.loads((tmp_path / "seg.segment.json").read_text())]
        assert printed["count"] == len(labels)
        return {"labels": labels, "threshold": predictor.calls[-1]}

    return call


def test_threshold_flag_parses():
    parser = build_parser()
    args = parser.parse_args(["segment", "a.png", "--checkpoint", "run", "--threshold", "0.25"])
    assert args.threshold == 0.25
    assert parser.parse_args(["segment", "a.png", "--checkpoint", "run"]).threshold is None
    for bad in ("1.5", "-0.1", "high"):
        with pytest.raises(SystemExit):
            parser.parse_args(["segment", "a.png", "--checkpoint", "run", "--threshold", bad])


def test_threshold_flag_changes_the_segments(segment):
    default = segment()
    assert default == {"labels": ["circle"], "threshold": OBJECT_THRESHOLD}
    assert segment("--threshold", "0.5")["labels"] == ["circle", "square"]
    assert segment("--threshold", "0.95")["labels"] == []


def test_report_and_evaluation_share_the_threshold():
    def default(function, name):
        return inspect.signature(function).parameters[name].default

    assert default(report.write_report, "threshold") is postprocess.OBJECT_THRESHOLD
    assert default(panoptic_inference, "object_threshold") is postprocess.OBJECT_THRESHOLD
    assert default(FindPredictor.segment, "object_threshold") is postprocess.OBJECT_THRESHOLD
    assert 0.0 < OBJECT_THRESHOLD < 1.0
