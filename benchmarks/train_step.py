"""Training speed of a preset on synthetic data; prints one JSON object.

    python benchmarks/train_step.py                      # find_tiny, CPU, batch 8
    python benchmarks/train_step.py --device cuda --batch-size 16 --size 128

Reports optimizer steps per second of the full loop (data, joint forward of all six tasks,
losses, backward, clip, AdamW), and on one fixed batch the cost of one joint
forward(+backward) against six single-task forwards(+backwards), side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from findvl.data.synth import SynthConfig, write_synth
from findvl.train.config import train_config
from findvl.train.criterion import build_requests
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="findvl-bench-") as tmp:
        data = Path(tmp) / "data"
        write_synth(
            SynthConfig(out=data, images=args.images, seed=0, size=args.size), progress=False
        )
        config = train_config(
            args.preset,
            [f'data.root="{data}"', *args.set],
            steps=args.steps + 1,
            batch_size=args.batch_size,
            device=args.device,
        )
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        trainer.train_step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        result = {
            "preset": args.preset,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "image_size": args.size,
            "steps_per_s": args.steps / seconds,
            "images_per_s": args.steps * args.batch_size / seconds,
            "forward_backward": joint_vs_single(trainer, repeats=args.repeats, backward=True),
            "forward_only": joint_vs_single(trainer, repeats=args.repeats, backward=False),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
