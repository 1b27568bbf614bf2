"""``findvl info``: text and JSON reports for tiny built-in and tiny Hugging Face encoders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from findvl.cli import info


def run_info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="findvl info")
    info.register(parser)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_info_json_for_hf_encoders(tmp_path: Path, capsys: pytest.CaptureFixture, tiny_hf) -> None:
    vision = tiny_hf.dinov2(tmp_path / "dinov2")
    language = tiny_hf.llama(tmp_path / "llama")
    argv = ["--vision", str(vision), "--language", str(language), "--language-layer", "-2",
            "--longest-side", "128"]  # fmt: skip
    assert run_info([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    v, lang = report["vision"], report["language"]
    assert v["model_type"] == "dinov2" and v["input_shape"] == [1, 3, 96, 128]
    assert [(lv["name"], lv["stride"], lv["shape"]) for lv in v["levels"]] == [
        ("res2", 4, [1, 256, 24, 32]), ("res3", 8, [1, 256, 12, 16]),
        ("res4", 16, [1, 256, 6, 8]), ("res5", 32, [1, 256, 3, 4]),
    ]  # fmt: skip
    assert v["params_frozen"] > 0 and v["params_trainable"] > 0 and v["forward_s"] > 0
    assert lang["model_type"] == "llama" and lang["layer"] == -2
    assert lang["feature_shape"] == [1, 12, 32]  # BOS + 11 words and lang["params_trainable"] == 0
    assert run_info(argv) == 0
    text = capsys.readouterr().out
    assert "hidden_states[-2]" in text and "res5  stride 32" in text


def test_info_tiny_text(capsys: pytest.CaptureFixture) -> None:
    assert run_info(["--vision", "tiny", "--language", "tiny"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("vision    tiny") and "res2  stride  4" in text


def test_info_missing_directory_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"not found: {tmp_path / 'x'}"):
        run_info(["--vision", str(tmp_path / "x"), "--language", "tiny"])
