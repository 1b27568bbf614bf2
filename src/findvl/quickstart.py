"""The main job: generate the synthetic FIND-Bench, train the FIND interface on all six tasks
within a time budget, evaluate every task (plus zero-shot interleaved grounding and two
baselines) and write a report with pictures.

As in the paper, the foundation models are pretrained and frozen (``find_synth``: the encoders
``findvl pretrain-encoders`` made on the synthetic train split, shipped with the package); the
interface, pixel decoder and ``lang_proj`` are trained (and the feature pyramid a ViT needs).

Training runs a fixed number of steps (:data:`QUICKSTART_STEPS`, about 11 minutes in all on
two CPU cores) with deterministic algorithms, so the same command trains the same weights
again on one machine (other CPUs may round differently). With a time budget instead
(``--minutes``) the number of steps is calibrated from the speed of the first steps
(multi-step schedule: the early learning rates do not depend on the total) and recorded;
``--steps N`` reruns exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.config import train_config
from findvl.train.optim import ScheduleConfig, build_scheduler
from findvl.train.trainer import Trainer

#: Steps of ``make demo``: 8.9 to 10.2 minutes in all on two idle CPU cores (8.5 to 9.8 of
#: them training), which leaves a margin within its 15 minutes for a busier machine.
QUICKSTART_STEPS = 1200

#: Training settings of the quickstart (on top of its preset).
QUICKSTART_OVERRIDES = [
    "optim.lr=0.001",
    "optim.clip_grad_norm=1.0",
    "optim.warmup_steps=20",
    'optim.schedule="multistep"',
    "match_every_layer=false",
    # FIND's weights (class 2, proposal-choice CE 0.4 against mask BCE + dice 5 + 5) were set
    # for COCO over 20+ epochs; in 700 steps the choice of a proposal hardly learns with them
    # (grounding CE stays at ln 16 per layer). Stronger choice terms, measured: PQ 31.9 -> 49.5,
    # PQ_things 0 -> 24.9, grounding cIoU 14.7 -> 32.9, interactive mIoU@1 48.0 -> 56.3.
    # Matching on 256 uniform points rather than FIND's 12544 (measured on one run each,
    # one thread: PQ 49.7 -> 42.5, PQ_things 25.5 -> 15.1, AP 23.5 -> 18.9 with 12544); FIND's
    # token-level retrieval term left out (IR@1 / TR@1 16.0 / 35.0 -> 15.3 / 26.0 with it).
    # The initial layer's proposal-choice CE is left out (its scores are the same for every
    # prompt): grounding cIoU +4.3 and +2.3 over two seeds (pretrained/README.md).
    # All three captions of an image train retrieval at every step, not one: IR@1 +3.3 and
    # +10.3, TR@1 +0 and +12 over two seeds, the other tasks within the seeds' spread.
    'loss={"num_points": 256, "match_points": 256, "retrieval_tokens": 0.0, "class_ce": 5.0, '
    '"grounding_ce": 2.0, "interactive_ce": 2.0, "interleave_ce": 2.0, "initial_choice": 0.0, '
    '"retrieval_captions": 3}',
    "log_every=5",
    "checkpoint_every=100",
    "keep_last=2",
    "data.workers=1",
    "deterministic=true",
]


@dataclass
class QuickstartConfig:
    out: Path = Path("runs/quickstart")
    minutes: float = 15.0  # total budget when ``steps`` is None (data + training + evaluation)
    seed: int = 0
    device: str = "cpu"
    preset: str = "find_synth"  # frozen pretrained encoders; "find_tiny" trains them from scratch
    train_images: int = 3000
    val_images: int = 100
    size: int = 64
    batch_size: int = 8
    steps: int | None = QUICKSTART_STEPS  # fixed (reproducible); None: fit ``minutes``
    eval_reserve_s: float = 150.0  # seconds kept for evaluation and the report
    overrides: tuple[str, ...] = ()


def make_world(cfg: QuickstartConfig, progress: bool = True) -> Path:
    """Train and val splits (val with references and long paragraphs), held-out combos on."""
    root = cfg.out / "data"
    for split, n, seed in (
        ("train", cfg.train_images, cfg.seed),
        ("val", cfg.val_images, cfg.seed + 1),
    ):
        marker = root / "annotations" / f"panoptic_{split}.json"
        if marker.exists():
            continue
        # Written last by write_synth: without it the split is absent or was interrupted, and
        # the quickstart owns its data folder.
        write_synth(
            SynthConfig(
                out=root, images=n, seed=seed, size=cfg.size, split=split, holdout_combos=True
            ),
            overwrite=True,
            progress=progress,
        )
    return root


def _set_total_steps(trainer: Trainer, steps: int) -> None:
    """Fix the schedule's total (multi-step: earlier factors are unchanged)."""
    c = trainer.config
    c.steps = steps
    done = trainer.step
    scheduler = build_scheduler(
        trainer.optimizer,
        ScheduleConfig(total_steps=steps, kind=c.optim.schedule, warmup_steps=c.optim.warmup_steps),
    )
    for group in trainer.optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    for _ in range(done):
        scheduler.step()
    trainer.scheduler = scheduler


def train(
    cfg: QuickstartConfig, root: Path, started: float, progress: bool = True
) -> tuple[Trainer, dict]:
    """Train within the budget; returns the trainer and its summary."""
    overrides = [*QUICKSTART_OVERRIDES, f"data.root={json.dumps(str(root))}", *cfg.overrides]
    steps = cfg.steps or 10**6
    config = train_config(
        cfg.preset,
        overrides,
        steps=steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=cfg.device,
    )
    trainer = Trainer(config, cfg.out / "run", progress=progress)
    if cfg.steps is None:
        trainer.train_step()  # warm-up: one-off costs are not part of the rate
        calibration = 4
        t0 = time.time()
        for _ in range(calibration - 1):
            trainer.train_step()
        per_step = (time.time() - t0) / (calibration - 1)
        left = cfg.minutes * 60 - (time.time() - started) - cfg.eval_reserve_s
        _set_total_steps(trainer, max(calibration + 1, int(left / per_step)))
    summary = trainer.fit()
    return trainer, summary


def run_quickstart(cfg: QuickstartConfig, progress: bool = True) -> dict:
    """Everything ``make demo`` does; returns the metrics written to ``metrics.json``."""
    from findvl.evaluation.runner import evaluate_run
    from findvl.report import write_report

    started = time.time()
    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    root = make_world(cfg, progress)
    trainer, summary = train(cfg, root, started, progress)
    model = trainer.model.eval()
    train_minutes = summary["seconds"] / 60
    results = evaluate_run(
        model,
        trainer.vocab.names,
        trainer.vocab.isthing,
        root,
        "val",
        seed=cfg.seed,
        out_dir=cfg.out / "eval",
        progress=progress,
        interactive_objects=2,
    )
    metrics = {
        **results,
        "train": {"minutes": round(train_minutes, 3), "steps": trainer.step},
        "seed": cfg.seed,
        "total_minutes": round((time.time() - started) / 60, 3),
    }
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    write_report(cfg.out, model, trainer.vocab, root, metrics, seed=cfg.seed)
    return metrics
