"""``findvl pretrain-encoders``: exported directories load through findvl's own adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from findvl.cli import COMMANDS, build_parser, main
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.loading import (
    CLIP_MEAN,
    CLIP_STD,
    load_language_encoder,
    load_vision_encoder,
)
from findvl.encoders.preprocess import preprocess_images
from findvl.pretrain.export import stored_statistics

HIDDEN = 64  # the default tower width


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(root, 40, seed=0, size=64, holdout_combos=True), progress=False)
    write_synth(
        SynthConfig(root, 8, seed=1, size=64, split="val", holdout_combos=True), progress=False
    )
    return root


@pytest.fixture(scope="module")
def exported(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrained")
    _pretrain(tiny_world, out, "--steps", "4", "--batch-size", "8", "--overwrite")
    return out


def _pretrain(world: Path, out: Path, *options: str) -> None:
    """``findvl pretrain-encoders`` on ``world`` (one thread; torch's thread count restored)."""
    argv = ["pretrain-encoders", "--data", str(world), "--out", str(out), "--threads", "1",
            "--no-progress", *options]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)


def test_the_command_is_registered_and_has_help(capsys: pytest.CaptureFixture) -> None:
    assert "pretrain-encoders" in COMMANDS
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["pretrain-encoders", "-h"])
    assert exit_info.value.code == 0
    assert "--minutes" in capsys.readouterr().out


def test_steps_and_minutes_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["pretrain-encoders", "--data", "d", "--out", "o", "--steps", "2", "--minutes", "1"]
        )


def test_vision_directory_loads_as_a_regnet_with_its_own_levels(exported_regnet: Path) -> None:
    directory = exported_regnet / "synth-clip-vision"
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "regnet"
    assert (directory / "model.safetensors").is_file()
    assert (directory / "visual_projection.safetensors").is_file()
    encoder = load_vision_encoder(directory, longest_side=64)
    assert encoder.model_type == "regnet"
    assert encoder.norm.mean == stored_statistics(CLIP_MEAN)  # the training normalisation
    batch = preprocess_images([torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)], encoder.norm)
    with torch.no_grad():
        levels = encoder(batch.pixels)
    assert {k: tuple(v.shape) for k, v in levels.items()} == {
        "res2": (1, 32, 32, 32), "res3": (1, 48, 16, 16),
        "res4": (1, 96, 8, 8), "res5": (1, 144, 4, 4),
    }  # fmt: skip
    assert all(not p.requires_grad for p in encoder.backbone.parameters())
    report = json.loads((exported_regnet / "pretrain.json").read_text())
    assert report["longest_side"] == 64 and report["grid_stride"] is None
    recall = report["metrics"]["recall_at_1"]
    for key in ("image_to_text", "text_to_image"):  # in-memory model == exported directories
        assert report["exported_recall_at_1"][key] == pytest.approx(recall[key])
    assert len(report["metrics"]["dense_levels"]) == 3  # strides 4, 8, 16


def test_resnet_tower_reads_images_resized_to_its_training_side(
    tiny_world: Path, tmp_path: Path
) -> None:
    _pretrain(tiny_world, tmp_path, "--steps", "2", "--batch-size", "4", "--vision", "resnet",
              "--eval-split", "none")  # fmt: skip
    directory = tmp_path / "synth-clip-vision"
    assert json.loads((directory / "config.json").read_text())["model_type"] == "resnet"
    encoder = load_vision_encoder(directory, longest_side=128)
    batch = preprocess_images([torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)], encoder.norm)
    assert tuple(batch.pixels.shape) == (1, 3, 128, 128)
    with torch.no_grad():
        levels = encoder(batch.pixels)
    assert {k: tuple(v.shape) for k, v in levels.items()} == {
        "res2": (1, 32, 32, 32), "res3": (1, 64, 16, 16),
        "res4": (1, 96, 8, 8), "res5": (1, 128, 4, 4),
    }  # fmt: skip
    report = json.loads((tmp_path / "pretrain.json").read_text())
    assert report["longest_side"] == 128


def test_colour_heads_train_with_a_hierarchical_tower_only(
    tiny_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["pretrain-encoders", "--data", str(tiny_world), "--out", str(tmp_path / "vit"),
            "--steps", "2", "--colour-weight", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "--colour-weight" in capsys.readouterr().err
    assert not (tmp_path / "vit").exists()
    _pretrain(tiny_world, tmp_path, "--steps", "2", "--batch-size", "4", "--vision", "resnet",
              "--colour-weight", "1")  # fmt: skip
    report = json.loads((tmp_path / "pretrain.json").read_text())
    assert report["config"]["objective"]["colour_weight"] == 1.0
    levels = report["metrics"]["colour_levels"]  # strides 4, 8, 16 and 32 of the 64 px image
    assert len(levels) == 4 and all(0 <= level["thing_patches"] <= 100 for level in levels)
    log = [json.loads(line) for line in (tmp_path / "pretrain-log.jsonl").read_text().splitlines()]
    assert "colour" in log[-1] and len(log[-1]["holdout_thing_colour_acc_levels"]) == 4
    exported = load_vision_encoder(tmp_path / "synth-clip-vision", longest_side=128)
    assert not any("colour" in name for name, _ in exported.named_parameters())  # discarded


@pytest.fixture(scope="module")
def exported_regnet(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrained_regnet")
    _pretrain(tiny_world, out, "--steps", "4", "--batch-size", "8", "--vision", "regnet")
    return out


def test_vit_vision_directory_loads_as_a_clip_pyramid(exported: Path) -> None:
    directory = exported / "synth-clip-vision"
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "clip_vision_model"
    assert (directory / "model.safetensors").is_file()
    encoder = load_vision_encoder(
        directory, out_channels=32, longest_side=64, grid_stride=4, dtype="fp32"
    )
    assert encoder.model_type == "clip_vision_model"
    assert encoder.norm.mean == stored_statistics(CLIP_MEAN)  # the training normalisation
    assert encoder.norm.std == stored_statistics(CLIP_STD)
    batch = preprocess_images([torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)], encoder.norm)
    assert tuple(batch.pixels.shape) == (1, 3, 64, 64)
    with torch.no_grad():
        grid = encoder.grid(batch.pixels)
        levels = encoder(batch.pixels)
    assert tuple(grid.shape) == (1, HIDDEN, 16, 16)  # the 16x16 patch grid of the 64 px image
    assert {k: tuple(v.shape) for k, v in levels.items()} == {
        "res2": (1, 32, 16, 16), "res3": (1, 32, 8, 8),
        "res4": (1, 32, 4, 4), "res5": (1, 32, 2, 2),
    }  # fmt: skip
    assert all(not p.requires_grad for p in encoder.backbone.parameters())


def test_text_directory_loads_as_a_clip_text_encoder(exported: Path) -> None:
    directory = exported / "synth-clip-text"
    assert json.loads((directory / "config.json").read_text())["model_type"] == "clip_text_model"
    encoder = load_language_encoder(directory, layer=None, dtype="fp32", max_length=77)
    texts = ["a white hexagon", "A picture of two stars over sand."]
    out = encoder.encode(texts)
    lengths = out.mask.sum(1)
    assert out.features.shape == (2, int(lengths.max()), HIDDEN)
    assert out.sentence.shape == (2, HIDDEN)
    assert lengths.tolist() == [5, 10]  # BOS + words/punctuation + EOS
    ids = encoder.tokenizer(texts, padding="longest", return_tensors="pt")["input_ids"]
    eot = encoder.eot_index(ids, out.mask)
    assert eot.tolist() == (lengths - 1).tolist()
    assert (ids[torch.arange(2), eot] == encoder.tokenizer.eos_token_id).all()
    spans = [texts[0][a:b] for a, b in out.offsets[0].tolist() if b > a]
    assert spans == ["a", "white", "hexagon"]


def test_logs_report_and_exported_parity(exported: Path) -> None:
    records = [
        json.loads(line) for line in (exported / "pretrain-log.jsonl").read_text().splitlines()
    ]
    assert records[-1]["step"] == 4
    assert {"loss", "clip", "dense", "holdout_i2t_r1", "holdout_dense_acc"} <= set(records[-1])
    report = json.loads((exported / "pretrain.json").read_text())
    assert report["eval_split"] == "val"
    assert report["longest_side"] == 64 and report["grid_stride"] == 4
    assert report["summary"]["steps"] == 4
    recall = report["metrics"]["recall_at_1"]
    for key in ("image_to_text", "text_to_image"):  # in-memory model == exported directories
        assert report["exported_recall_at_1"][key] == pytest.approx(recall[key])
    assert 0 <= report["metrics"]["dense"]["all_patches"] <= 100
    assert report["config"]["objective"]["hard_negatives"] is False  # the default objective


def test_existing_outputs_are_not_replaced_without_overwrite(
    exported: Path, tiny_world: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["pretrain-encoders", "--data", str(tiny_world), "--out", str(exported), "--steps", "1"]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_the_same_seed_gives_the_same_weights(
    exported: Path, tiny_world: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    _pretrain(tiny_world, tmp_path, "--steps", "4", "--batch-size", "8")
    for tower in ("synth-clip-vision", "synth-clip-text"):
        first = load_file(exported / tower / "model.safetensors")
        second = load_file(tmp_path / tower / "model.safetensors")
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_plain_clip_objective_is_still_available(
    exported: Path, tiny_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from safetensors.torch import load_file

    argv = ["pretrain-encoders", "--data", str(tiny_world), "--out", str(tmp_path), "--steps", "4",
            "--batch-size", "8", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main([*argv, "--thing-weight", "0"]) == 2
    assert "--thing-weight" in capsys.readouterr().err
    _pretrain(tiny_world, tmp_path, "--steps", "4", "--batch-size", "8", "--hard-negatives",
              "--binding-negatives", "--thing-weight", "2")  # fmt: skip
    report = json.loads((tmp_path / "pretrain.json").read_text())
    objective = report["config"]["objective"]
    assert objective["hard_negatives"] is True and objective["thing_weight"] == 2.0
    assert objective["binding_negatives"] is True
    accuracy = report["metrics"]["negative_accuracy"]  # every kind measured on the eval split
    assert set(accuracy) <= {
        "shape",
        "colour",
        "colour_swap",
        "size_swap",
        "shape_swap",
        "relation",
    }
    assert accuracy and all(0 <= v <= 100 for v in accuracy.values())
    log = [json.loads(line) for line in (tmp_path / "pretrain-log.jsonl").read_text().splitlines()]
    assert any(k.endswith("_swap_acc") for k in log[-1]), log[-1]  # the trained kinds
    first = load_file(exported / "synth-clip-text" / "model.safetensors")
    second = load_file(tmp_path / "synth-clip-text" / "model.safetensors")
    assert not all(torch.equal(first[k], second[k]) for k in first)
