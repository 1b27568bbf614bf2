"""Quality of pretrained encoders: the shipped ones, and a fresh run of the command (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from findvl.cli import main
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.loading import (
    image_norm_for,
    load_language_encoder,
    load_vision_encoder,
)
from findvl.pretrain.data import read_captioned, read_class_table, to_pretrain_data
from findvl.pretrain.evaluate import evaluate_exported

MODELS = Path(__file__).resolve().parents[2] / "src" / "findvl" / "pretrained"
VISION, TEXT = MODELS / "synth-clip-vision", MODELS / "synth-clip-text"


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def synth_val(root: Path) -> Path:
    """The val split the shipped quality is measured on (src/findvl/pretrained/README.md)."""
    config = SynthConfig(root, 100, seed=1, size=64, split="val", holdout_combos=True)
    write_synth(config, progress=False)
    return root


@pytest.mark.skipif(not VISION.is_dir(), reason="no shipped encoders")
def test_shipped_encoders_load_and_keep_their_measured_quality(tmp_path: Path) -> None:
    report = json.loads((MODELS / "pretrain.json").read_text())
    side, stride = report["longest_side"], report["grid_stride"]
    vision = load_vision_encoder(VISION, out_channels=32, longest_side=side, grid_stride=stride)
    language = load_language_encoder(TEXT)
    assert vision.grid(torch.zeros(1, 3, 64, 64)).shape == (1, 64, 16, 16)
    assert language.encode(["a red ring"]).features.shape == (1, 5, 64)
    root = synth_val(tmp_path / "synth")
    data = to_pretrain_data(
        read_captioned(root, "val"),
        tokenizer=language.tokenizer,
        norm=image_norm_for(VISION, family="clip", longest_side=side),
        patch_size=4,
        grid_stride=stride,
        classes=read_class_table(root, "val"),
    )
    recall = evaluate_exported(VISION, TEXT, data).recall_at_1
    recorded = report["exported_recall_at_1"]
    # a few points of slack for changes in how the synthetic world is drawn
    assert recall.image_to_text >= recorded["image_to_text"] - 5
    assert recall.text_to_image >= recorded["text_to_image"] - 5


RESNET = MODELS / "resnet"


@pytest.mark.skipif(not (RESNET / "synth-clip-vision").is_dir(), reason="no shipped ResNet")
def test_shipped_resnet_loads_with_its_levels_and_keeps_its_quality(tmp_path: Path) -> None:
    report = json.loads((RESNET / "pretrain.json").read_text())
    assert report["longest_side"] == 128  # the 64 px images resized, as FIND resizes inputs
    vision = load_vision_encoder(RESNET / "synth-clip-vision", longest_side=report["longest_side"])
    levels = vision.forward_features(torch.zeros(1, 3, 128, 128))
    assert {k: tuple(v.shape) for k, v in levels.items()} == {
        "res2": (1, 32, 32, 32), "res3": (1, 64, 16, 16),
        "res4": (1, 96, 8, 8), "res5": (1, 128, 4, 4),
    }  # fmt: skip
    language = load_language_encoder(RESNET / "synth-clip-text")
    root = synth_val(tmp_path / "synth")
    data = to_pretrain_data(
        read_captioned(root, "val"), tokenizer=language.tokenizer, norm=vision.norm,
        patch_size=4, grid_stride=4, classes=read_class_table(root, "val"),
    )  # fmt: skip
    recall = evaluate_exported(RESNET / "synth-clip-vision", RESNET / "synth-clip-text", data)
    recorded = report["exported_recall_at_1"]
    assert recall.recall_at_1.image_to_text >= recorded["image_to_text"] - 5
    assert recall.recall_at_1.text_to_image >= recorded["text_to_image"] - 5


@pytest.mark.slow
def test_the_command_reproduces_a_useful_model_on_a_small_budget(tmp_path: Path) -> None:
    """400 steps (about a fifth of the shipped run): far above chance (1% R@1)."""
    root = tmp_path / "synth"
    train = SynthConfig(root, 3000, seed=0, size=64, split="train", holdout_combos=True)
    write_synth(train, progress=False)
    synth_val(root)
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        argv = ["pretrain-encoders", "--data", str(root), "--out", str(out), "--steps", "400",
                "--seed", "0", "--threads", "1", "--no-progress"]  # fmt: skip
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    metrics = json.loads((out / "pretrain.json").read_text())["metrics"]
    assert metrics["images"] == 100 and metrics["captions"] == 300
    assert metrics["recall_at_1"]["image_to_text"] >= 10
    assert metrics["recall_at_1"]["text_to_image"] >= 4
    assert metrics["dense"]["all_patches"] >= 84  # the four backgrounds and the shapes' outlines
