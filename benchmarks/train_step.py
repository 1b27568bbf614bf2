"""Training speed of a preset on synthetic data; prints one JSON object.

    python benchmarks/train_step.py                      # find_tiny, CPU, batch 8
    python benchmarks/train_step.py --device cuda --batch-size 16 --size 128
    python benchmarks/train_step.py --quickstart --reference --skip-joint [--threads 1]
    python benchmarks/train_step.py --preset find_synth --quickstart --dense-masks --skip-joint

Reports optimizer steps per second of the full loop (data, joint forward of all six tasks,
losses, backward, clip, AdamW), and on one fixed batch the cost of one joint
forward(+backward) against six single-task forwards(+backwards), side by side.

``--quickstart`` adds the training overrides of the quickstart. ``--reference`` also trains a
second model with the per-image reference criterion, one-tensor-at-a-time AdamW and one dense
attention mask over the whole interface sequence (instead of its blocks), its steps
alternating with the batched path's, so both see the same machine load. ``--dense-masks``
likewise trains a model on the former mask path (every layer's dense masks formed in the
forward, a correction round encoding its images again); ``--profile FILE``
writes cProfile statistics of the timed steps of the batched path (top entries to stderr).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.quickstart import QUICKSTART_OVERRIDES
from findvl.train.config import train_config
from findvl.train.criterion import FindCriterion
from findvl.train.criterion_reference import ReferenceCriterion
from findvl.train.optim import OptimizerConfig, ScheduleConfig, build_optimizer, build_scheduler
from findvl.train.requests import build_requests
from findvl.train.trainer import Trainer


def _seconds(fn: Callable[[], None], *, repeats: int, device: str) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def joint_vs_single(trainer: Trainer, *, repeats: int, backward: bool) -> dict[str, float]:
    """Seconds of one joint pass over all tasks and of one pass per task, on the same batch."""
    c = trainer.config
    examples = trainer.source.batch(0, 0, 0, 1)
    requests = build_requests(examples, trainer.vocab.names)
    model = trainer.model

    def run(reqs: list) -> None:
        grad = torch.enable_grad() if backward else torch.no_grad()
        with grad:
            out = model(
                [ex.image for ex in examples],
                reqs,
                generator=torch.Generator().manual_seed(0),
                all_layer_masks=backward,
            )
            if backward:
                trainer.criterion(out, examples, torch.Generator().manual_seed(1))[
                    "total"
                ].backward()
                model.zero_grad(set_to_none=True)

    joint = _seconds(lambda: run(requests), repeats=repeats, device=c.device)
    single = sum(_seconds(lambda r=r: run([r]), repeats=repeats, device=c.device) for r in requests)
    return {
        "tasks": len(requests),
        "joint_s": joint,
        "single_sum_s": single,
        "joint_over_single": joint / single,
    }


def use_reference(trainer: Trainer) -> None:
    """Switch a fresh trainer to the per-image criterion, one-tensor-at-a-time AdamW and the
    dense-mask interface attention."""
    c, o = trainer.config, trainer.config.optim
    trainer.model.interface.block_sparse = False
    trainer.criterion = ReferenceCriterion(trainer.weights, match_every_layer=c.match_every_layer)
    trainer.optimizer = build_optimizer(
        trainer.model,
        OptimizerConfig(
            lr=o.lr,
            weight_decay=o.weight_decay,
            clip_grad_norm=o.clip_grad_norm,
            multi_tensor=False,
        ),
    )
    trainer.scheduler = build_scheduler(
        trainer.optimizer,
        ScheduleConfig(total_steps=c.steps, kind=o.schedule, warmup_steps=o.warmup_steps),
    )


def use_dense_masks(trainer: Trainer) -> None:
    """Switch a fresh trainer to the former mask path: every layer's dense ``[B,Q,H,W]`` mask
    logits formed in the forward and read by the criterion, and a correction round that
    encodes its images again."""
    c = trainer.config
    trainer.criterion = FindCriterion(
        trainer.weights, match_every_layer=c.match_every_layer, dense_masks=True
    )
    trainer.share_encoding = False


def timed_steps(
    trainers: dict[str, Trainer], *, steps: int, device: str, profile: Path | None
) -> dict[str, float]:
    """Steps per second of each trainer, their steps interleaved (after one warm-up step)."""
    seconds = dict.fromkeys(trainers, 0.0)
    profiler = cProfile.Profile() if profile else None
    for trainer in trainers.values():
        trainer.train_step()
    for _ in range(steps):
        for name, trainer in trainers.items():
            if profiler is not None and name == "batched":
                profiler.enable()
            start = time.perf_counter()
            trainer.train_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - start
            if profiler is not None and name == "batched":
                profiler.disable()
    if profiler is not None:
        profiler.dump_stats(profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {name: steps / s for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="find_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quickstart", action="store_true", help="quickstart training overrides")
    parser.add_argument("--reference", action="store_true", help="also time the per-image path")
    parser.add_argument("--skip-joint", action="store_true", help="skip joint-vs-single timings")
    parser.add_argument(
        "--dense-masks",
        action="store_true",
        help="also time the dense-mask path (every layer's masks formed, encoding not shared)",
    )
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="findvl-bench-") as tmp:
        data = Path(tmp) / "data"
        write_synth(
            SynthConfig(out=data, images=args.images, seed=0, size=args.size), progress=False
        )
        overrides = [*(QUICKSTART_OVERRIDES if args.quickstart else []), *args.set]
        config = train_config(
            args.preset,
            [f'data.root="{data}"', *overrides],
            steps=args.steps + 1,
            batch_size=args.batch_size,
            device=args.device,
        )
        trainers = {"batched": Trainer(config, Path(tmp) / "run", progress=False)}
        if args.reference:
            trainers["reference"] = Trainer(config, Path(tmp) / "ref", progress=False)
            use_reference(trainers["reference"])
        if args.dense_masks:
            trainers["dense"] = Trainer(config, Path(tmp) / "dense", progress=False)
            use_dense_masks(trainers["dense"])
        rates = timed_steps(trainers, steps=args.steps, device=args.device, profile=args.profile)
        trainer = trainers["batched"]
        result = {
            "preset": args.preset,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "image_size": args.size,
            "overrides": overrides,
            "steps_per_s": rates["batched"],
            "images_per_s": rates["batched"] * args.batch_size,
        }
        if args.reference:
            result["reference_steps_per_s"] = rates["reference"]
            result["speedup"] = rates["batched"] / rates["reference"]
        if args.dense_masks:
            result["dense_masks_steps_per_s"] = rates["dense"]
            result["speedup_over_dense_masks"] = rates["batched"] / rates["dense"]
        if not args.skip_joint:
            result["forward_backward"] = joint_vs_single(
                trainer, repeats=args.repeats, backward=True
            )
            result["forward_only"] = joint_vs_single(trainer, repeats=args.repeats, backward=False)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
