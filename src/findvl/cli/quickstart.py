"""`findvl quickstart`: what `make demo` runs — data, training, evaluation, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    from findvl.cli.checks import positive_int

    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="train exactly this many steps (default: findvl.quickstart.QUICKSTART_STEPS, "
        "the same on every machine; ~11 min in all on 2 idle CPU cores)",
    )
    budget.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="instead of a step count: fit training into this total budget (the step count "
        "then depends on the machine's speed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="synthetic image side")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--preset",
        default="find_synth",
        help="model preset (find_synth: frozen pretrained encoders; find_tiny: from scratch)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="training config override"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from findvl.cli.checks import check_device, check_output_dir
    from findvl.quickstart import QUICKSTART_STEPS, QuickstartConfig, run_quickstart

    check_device(args.device)
    check_output_dir(args.out)
    cfg = QuickstartConfig(
        out=args.out,
        minutes=15.0 if args.minutes is None else args.minutes,
        seed=args.seed,
        device=args.device,
        train_images=args.train_images,
        val_images=args.val_images,
        size=args.size,
        batch_size=args.batch_size,
        preset=args.preset,
        steps=None if args.minutes is not None else (args.steps or QUICKSTART_STEPS),
        overrides=tuple(args.set),
    )
    metrics = run_quickstart(cfg, progress=not args.no_progress)
    out = args.out
    summary = {
        k: metrics.get(k.split(".")[0], {}).get(k.split(".", 1)[1])
        for k in (
            "panoptic.PQ",
            "grounding.cIoU",
            "interactive.mIoU@1",
            "retrieval.IR@1",
            "interleave_segmentation.cIoU",
            "interleave_retrieval.IR@5",
        )
    }
    print(json.dumps(summary, indent=2))
    print(f"""
Wrote:
  {out / "metrics.json"}      all metrics (percent)
  {out / "report.md"} / report.html   tables and pictures
  {out / "run"}               checkpoints, config.json, train.jsonl
  {out / "data"}              the synthetic FIND-Bench world
Next:
  findvl evaluate {out / "run"} --data {out / "data"} --split val
  findvl segment {out / "data/images/val"}/<image>.png --checkpoint {out / "run"}
  findvl ground IMAGE --checkpoint {out / "run"} --phrase "the red circle"
  findvl click IMAGE --checkpoint {out / "run"} --point 40,30
""")
    return 0
