"""Run configuration: bad keys are named, the config travels with the run, runs reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from findvl.cli import main
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.runs import load_run
from findvl.train.checkpoint import find_latest
from findvl.train.config import load_train_config, train_config
from findvl.train.trainer import Trainer

OVERRIDES = ["model.interface.num_layers=1", 'loss={"num_points": 256}', "checkpoint_every=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(out=root, images=4, seed=4, size=64), progress=False)
    return root


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory) -> Trainer:
    run = tmp_path_factory.mktemp("run")
    config = train_config(
        "find_tiny", [f'data.root="{dataset}"', *OVERRIDES], steps=2, batch_size=2, seed=5
    )
    trainer = Trainer(config, run, progress=False)
    trainer.fit()
    return trainer


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optim.nope=1", "optim.nope"),
        ('loss={"nope": 1}', "nope"),
        ('loss={"class_ce": -1}', "class_ce"),
        ("model.interface.depth=3", "model.interface.depth"),
        ("log_every=0", "log_every"),
        ("model.interface.dim_proj=32", "loss.retrieval_tokens"),
    ],
)
def test_bad_config_key_is_named(dataset, tmp_path, capsys, override, named) -> None:
    argv = ["train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--set", override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "error" in err
    assert not (tmp_path / "run").exists()  # nothing written before the config is checked


def test_config_saved_in_run_and_every_checkpoint(trained: Trainer) -> None:
    run, expected = trained.run_dir, json.loads(trained.config.to_json())
    assert json.loads((run / "config.json").read_text()) == expected
    checkpoints = sorted(run.glob("step_*"))
    assert [p.name for p in checkpoints] == ["step_00000001", "step_00000002"]
    for ckpt in checkpoints:
        saved = json.loads((ckpt / "state.json").read_text())["config"]["train"]
        assert saved == expected
        assert load_train_config(saved) == trained.config


def test_load_run_rebuilds_the_trained_model(trained: Trainer, images, all_requests) -> None:
    loaded = load_run(trained.run_dir)
    assert loaded.checkpoint == find_latest(trained.run_dir)
    assert loaded.class_names == trained.vocab.names
    imgs = images([(64, 64), (48, 64)])
    requests = all_requests(imgs)
    trained.model.eval()
    with torch.no_grad():
        ref = trained.model(imgs, requests, generator=torch.Generator().manual_seed(1))
        out = loaded.model(imgs, requests, generator=torch.Generator().manual_seed(1))
    pairs = [
        (ref.generic_segmentation.layers[-1].masks, out.generic_segmentation.layers[-1].masks),
        (ref.generic_segmentation.layers[-1].logits, out.generic_segmentation.layers[-1].logits),
        (
            ref.interactive_segmentation.layers[-1].masks,
            out.interactive_segmentation.layers[-1].masks,
        ),
        (ref.image_text_retrieval.layers[-1].query, out.image_text_retrieval.layers[-1].query),
    ]
    for a, b in pairs:
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    trained_state, loaded_state = trained.model.state_dict(), loaded.model.state_dict()
    assert trained_state.keys() == loaded_state.keys()
    assert all(torch.equal(trained_state[k], loaded_state[k]) for k in trained_state)


def test_resume_refuses_another_config(dataset: Path, trained: Trainer) -> None:
    other = train_config(
        "find_tiny",
        [f'data.root="{dataset}"', *OVERRIDES, "optim.lr=0.5"],
        steps=2,
        batch_size=2,
        seed=5,
    )
    with pytest.raises(ValueError, match="different config"):
        Trainer(other, trained.run_dir, progress=False).resume()


def test_existing_run_needs_resume(dataset: Path, trained: Trainer, capsys) -> None:
    argv = ["train", "--data", str(dataset), "--out", str(trained.run_dir), "--steps", "2"]
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
