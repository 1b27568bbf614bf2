"""`findvl train`: joint multi-task training (single process or under torchrun)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from findvl.cli.checks import check_device, check_output_dir, positive_float, positive_int
from findvl.presets import PRESETS


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="find_tiny",
        choices=list(PRESETS),
        metavar="NAME",
        help=f"model preset: {', '.join(PRESETS)} (released ones: see docs/checkpoints.md)",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="optimizer steps (1000)")
    length.add_argument(
        "--epochs", type=positive_float, help="passes over the split (sets --steps)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=3e-4 --set model.interface.num_layers=6",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from findvl.data.readers.dataset import load_dataset
    from findvl.train import distributed as dist
    from findvl.train.config import train_config
    from findvl.train.trainer import Trainer

    if not args.data.is_dir():
        raise FileNotFoundError(f"--data: no directory at {args.data}")
    check_device(args.device)
    check_output_dir(args.out)
    steps = 1000 if args.steps is None else args.steps
    if args.epochs is not None:
        n = len(load_dataset(args.data, args.split))
        steps = max(1, round(args.epochs * n / args.batch_size))
    overrides = [f"data.root={json.dumps(str(args.data))}", f"data.split={json.dumps(args.split)}"]
    config = train_config(
        args.preset,
        overrides + list(args.set),
        steps=steps,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
    )
    if (args.out / "config.json").exists() and not args.resume:
        raise ValueError(f"--out: {args.out} already holds a run; pass --resume or pick another")
    try:
        trainer = Trainer(config, args.out, progress=not args.no_progress)
        if args.resume:
            trainer.resume()
        summary = trainer.fit()
    finally:
        dist.cleanup()
    print(json.dumps(summary))
    return 0
