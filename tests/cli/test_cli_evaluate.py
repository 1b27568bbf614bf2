"""`findvl evaluate` command lines, the interactive task included (`findvl eval` runs no model)."""

from __future__ import annotations

import json

import pytest

import findvl.cli as cli
from findvl.runs import LoadedRun


@pytest.fixture
def with_evaluate(monkeypatch):
    commands = dict(cli.COMMANDS)
    commands["evaluate"] = ("findvl.cli.evaluate", "run a checkpoint on a dataset")
    monkeypatch.setattr(cli, "COMMANDS", commands)


@pytest.fixture
def fake_run(monkeypatch, tmp_path, tiny_model):
    def load(path, device="cpu"):
        return LoadedRun(tiny_model(), [], [], None, tmp_path / "ckpt")

    monkeypatch.setattr("findvl.runs.load_run", load)


def test_missing_checkpoint_is_one_line_exit_2(with_evaluate, tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    code = cli.main(["evaluate", str(missing), "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(missing) in err


def test_json_parses(with_evaluate, fake_run, tmp_path, capsys, tiny_world):
    root = tiny_world(tmp_path / "w", images=2)
    args = [
        "evaluate",
        "ckpt",
        "--data",
        str(root),
        "--json",
        "--no-progress",
        "--tasks",
        "retrieval",
        "grounding",
        "--batch-size",
        "2",
    ]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"retrieval", "grounding", "meta"}
    assert 0 <= result["retrieval"]["IR@1"] <= 100


def test_interactive_json(with_evaluate, fake_run, tmp_path, capsys, tiny_world):
    root = tiny_world(tmp_path / "w", images=2)
    args = [
        "evaluate",
        "ckpt",
        "--data",
        str(root),
        "--json",
        "--no-progress",
        "--tasks",
        "interactive",
        "--interactive-objects",
        "1",
        "--max-clicks",
        "2",
    ]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)["interactive"]
    assert result["num_objects"] == 2 and 1 <= result["NoC@90"] <= 2


def test_eval_runs_no_model(capsys):
    """Scores that need a model are ``findvl evaluate``'s; ``findvl eval`` reads files only."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "interactive", "ckpt", "--data", "."])
    assert exit_info.value.code == 2
    assert "invalid choice: 'interactive'" in capsys.readouterr().err


def test_bad_limit(with_evaluate, tmp_path, capsys):
    assert cli.main(["evaluate", "x", "--data", str(tmp_path), "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_click_agreement_overrides_the_model_conventions(
    with_evaluate, monkeypatch, tmp_path, capsys, tiny_world, tiny_model
):
    model = tiny_model()
    assert model.conventions.click_agreement == 0
    monkeypatch.setattr(
        "findvl.runs.load_run",
        lambda path, device="cpu": LoadedRun(model, [], [], None, tmp_path / "ckpt"),
    )
    root = tiny_world(tmp_path / "w", images=2)
    base = ["evaluate", "ckpt", "--data", str(root), "--json", "--no-progress"]
    args = [*base, "--tasks", "interactive", "--interactive-objects", "1", "--max-clicks", "1"]
    assert cli.main([*args, "--click-agreement", "30"]) == 0
    assert model.conventions.click_agreement == 30.0
    assert json.loads(capsys.readouterr().out)["interactive"]["num_objects"] == 2
    assert cli.main([*args, "--click-agreement", "-1"]) == 2
    assert "--click-agreement" in capsys.readouterr().err


def test_threshold_reaches_panoptic_inference(
    with_evaluate, fake_run, monkeypatch, tmp_path, capsys, tiny_world
):
    import findvl.evaluation.generic as generic

    seen = []
    original = generic.panoptic_inference

    def spy(*args, **kwargs):
        seen.append(kwargs["object_threshold"])
        return original(*args, **kwargs)

    monkeypatch.setattr(generic, "panoptic_inference", spy)
    root = tiny_world(tmp_path / "w", images=2)
    base = ["evaluate", "ckpt", "--data", str(root), "--json", "--no-progress"]
    for threshold, expected in ((["--threshold", "0.35"], 0.35), ([], 0.8)):
        seen.clear()
        assert cli.main([*base, "--tasks", "generic", *threshold]) == 0
        assert json.loads(capsys.readouterr().out)["meta"]["object_threshold"] == expected
        assert seen == [expected, expected]  # one call per image
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--threshold", "1.5"])
    assert exit_info.value.code == 2
    assert "--threshold" in capsys.readouterr().err
