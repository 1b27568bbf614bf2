"""End-to-end smoke test of the main job (slow: it trains and evaluates), and the predictor
against the batched forward. The prediction commands on a run: ``tests/cli/test_cli_predict.py``."""

import dataclasses
import json
import time

import pytest
import torch

from findvl.build import build_preset
from findvl.model.requests import GroundedSegmentation, InteractiveSegmentation
from findvl.predictor import FindPredictor
from findvl.quickstart import QuickstartConfig, make_world, run_quickstart, train

KEYS = [
    "panoptic.PQ",
    "instance.AP",
    "semantic.mIoU",
    "grounding.cIoU",
    "grounding.mIoU",
    "interactive.mIoU@1",
    "interactive.NoC@85",
    "retrieval.IR@1",
    "retrieval.TR@1",
    "interleave_segmentation.cIoU",
    "interleave_retrieval.IR@5",
    "interleave_retrieval.IR@10",
    "baselines.embedding_average.IR@5",
    "baselines.text_only.IR@5",
    "train.minutes",
    "train.steps",
]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs")
    cfg = QuickstartConfig(out=out, train_images=24, val_images=6, size=64, batch_size=2, steps=2)
    return out, run_quickstart(cfg, progress=False)


@pytest.mark.slow
def test_quickstart_writes_every_file_and_key(quickstart):
    from findvl.report import lookup

    out, metrics = quickstart
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in KEYS:
        value = lookup(saved, key)
        assert value is not None, key
        if not key.startswith("train") and "NoC" not in key:
            assert 0.0 <= value <= 100.0, key
    assert saved["seed"] == 0 and saved["train"]["steps"] == 2
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "Interleaved retrieval" in text and "pictures/panoptic.png" in text
    for pic in ("panoptic", "grounding", "interactive", "interleave_retrieval", "training_curves"):
        assert (out / "pictures" / f"{pic}.png").stat().st_size > 100
    assert list((out / "run").glob("step_*/model.safetensors"))


def test_predictor_equals_batched_forward(images, point):
    torch.manual_seed(0)
    model = build_preset("find_tiny").eval()
    imgs = images([(64, 64), (64, 64)], seed=7)
    phrases = [["the red circle", "a square"], ["grass"]]
    prompts = [[point((64, 64), 10, 12)], [point((64, 64), 30, 40)]]
    with torch.no_grad():
        batched = model(imgs, [GroundedSegmentation(phrases), InteractiveSegmentation(prompts)])
    predictor = FindPredictor(model)
    for b in range(2):
        predictor.set_image(imgs[b])
        ground = predictor.ground(phrases[b])
        click = predictor.click(prompts[b])
        n = len(phrases[b])
        ref = batched.grounded_segmentation.final.logits[b, :n].softmax(-1).max(-1).values
        torch.testing.assert_close(ground.scores, ref, atol=1e-4, rtol=1e-4)
        best = batched.interactive_segmentation.best_masks()[b, :1]
        torch.testing.assert_close(
            click.logits,
            torch.nn.functional.interpolate(
                best[None], size=(64, 64), mode="bilinear", align_corners=False
            )[0],
            atol=1e-4,
            rtol=1e-4,
        )


@pytest.mark.slow
def test_same_seed_same_metrics(quickstart, tmp_path):
    out, metrics = quickstart
    again = QuickstartConfig(
        out=tmp_path, train_images=24, val_images=6, size=64, batch_size=2, steps=2
    )
    second = run_quickstart(again, progress=False)
    for timing in ("train", "total_minutes", "meta"):
        metrics, second = dict(metrics), dict(second)
        metrics.pop(timing, None)
        second.pop(timing, None)
    assert json.loads(json.dumps(metrics)) == json.loads(json.dumps(second))


def test_quickstart_settings_can_be_overridden_schedule_included(tmp_path):
    """``--set`` reaches the training's config after the quickstart's own settings, the
    learning-rate schedule as well (it was once assigned after the overrides)."""
    base = QuickstartConfig(out=tmp_path / "a", train_images=4, val_images=2, batch_size=2, steps=1)
    cosine = dataclasses.replace(
        base, out=tmp_path / "b", overrides=('optim.schedule="cosine"', "optim.lr=0.0005")
    )
    schedules = {}
    for cfg in (base, cosine):
        trainer, _ = train(cfg, make_world(cfg, progress=False), time.time(), progress=False)
        schedules[cfg.out.name] = (trainer.config.optim.schedule, trainer.config.optim.lr)
        saved = json.loads((cfg.out / "run" / "config.json").read_text())
        assert saved["optim"]["schedule"] == schedules[cfg.out.name][0]
    assert schedules == {"a": ("multistep", 0.001), "b": ("cosine", 0.0005)}
