"""`findvl train`: joint multi-task training (single process or under torchrun)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="find_tiny",
        help="model preset (find_tiny, find_synth, find_focalt, find_sam_llama, find_dinov2_clip)",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=float, help="passes over the split (sets --steps)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per process")
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
    from findvl.data.dataset import load_dataset
    from findvl.train import distributed as dist
    from findvl.train.config import train_config
    from findvl.train.trainer import Trainer

    if not args.data.is_dir():
        raise FileNotFoundError(f"--data: no directory at {args.data}")
    steps = args.steps or 1000
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
