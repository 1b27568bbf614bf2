"""`findvl evaluate` and `findvl eval interactive` command lines."""

from __future__ import annotations

import json

import pytest
from tests.test_evaluate_world import tiny_model, tiny_world

import findvl.cli as cli
from findvl.runs import LoadedRun


@pytest.fixture
def with_evaluate(monkeypatch):
    commands = dict(cli.COMMANDS)
    commands["evaluate"] = ("findvl.cli.evaluate", "run a checkpoint on a dataset")
    monkeypatch.setattr(cli, "COMMANDS", commands)


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    def load(path, device="cpu"):
        return LoadedRun(tiny_model(), [], [], None, tmp_path / "ckpt")

    monkeypatch.setattr("findvl.runs.load_run", load)


def test_missing_checkpoint_is_one_line_exit_2(with_evaluate, tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    code = cli.main(["evaluate", str(missing), "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(missing) in err


def test_json_parses(with_evaluate, fake_run, tmp_path, capsys):
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


def test_eval_interactive_json(fake_run, tmp_path, capsys):
    root = tiny_world(tmp_path / "w", images=2)
    args = [
        "eval",
        "interactive",
        "ckpt",
        "--data",
        str(root),
        "--json",
        "--no-progress",
        "--interactive-objects",
        "1",
        "--max-clicks",
        "2",
    ]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_objects"] == 2 and 1 <= result["NoC@90"] <= 2


def test_bad_limit(with_evaluate, tmp_path, capsys):
    assert cli.main(["evaluate", "x", "--data", str(tmp_path), "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err
