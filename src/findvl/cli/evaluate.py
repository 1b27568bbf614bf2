"""``findvl evaluate CHECKPOINT --data DIR``: run a checkpoint on a split and report every task.

Prints the results table (:mod:`findvl.tables`), or one JSON object on stdout with ``--json``.
Values are percentages (NoC in clicks); progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from findvl.cli.checks import check_device, unit_interval
from findvl.evaluation.tasks import TASKS


def register(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument(
        "--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks to run (all)"
    )
    parser.add_argument("--out", type=Path, default=None, help="keep prediction files here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--click-agreement",
        type=float,
        default=None,
        metavar="W",
        help="weight of the click agreement in the choice of a prompt's mask, in place of the "
        "model's conventions.click_agreement (0: the learned score alone, as FIND)",
    )
    parser.add_argument(
        "--threshold",
        type=unit_interval,
        default=None,
        help="minimum class score of a segment kept by panoptic inference, in [0, 1] "
        "(default: findvl.postprocess.OBJECT_THRESHOLD, as findvl segment and the report)",
    )
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``findvl evaluate`` that say which run, split and seed."""
    parser.add_argument("checkpoint", type=Path, help="run directory or checkpoint directory")
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument(
        "--interactive-objects", type=int, default=None, help="objects per image (all)"
    )
    parser.add_argument("--max-clicks", type=int, default=20, help="clicks per object (20)")
    parser.add_argument("--device", default="cpu")
    add_encoder_path_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")


def add_encoder_path_arguments(parser: argparse.ArgumentParser) -> None:
    """``--vision-path`` / ``--language-path``: encoder directories outside the run."""
    parser.add_argument(
        "--vision-path", default=None, metavar="DIR", help="vision encoder directory to use"
    )
    parser.add_argument(
        "--language-path", default=None, metavar="DIR", help="language encoder directory to use"
    )


def encoder_paths(args: argparse.Namespace) -> dict[str, str]:
    """The ``load_run`` keyword arguments of the encoder directories given on the command line."""
    names = ("vision_path", "language_path")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value}")


def evaluate_args(args: argparse.Namespace, tasks: tuple[str, ...], out_dir=None) -> dict:
    """Load the checkpoint named by ``args`` and evaluate ``tasks``."""
    from findvl.evaluation.runner import evaluate_run
    from findvl.postprocess import OBJECT_THRESHOLD
    from findvl.runs import load_run

    for name in ("limit", "batch_size", "interactive_objects", "max_clicks"):
        check_positive(f"--{name.replace('_', '-')}", getattr(args, name))
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data: no directory at {args.data}")
    check_device(args.device)
    threshold = getattr(args, "threshold", None)
    weight = getattr(args, "click_agreement", None)
    if weight is not None and not weight >= 0:
        raise ValueError(f"--click-agreement: must be a number >= 0, got {weight}")
    loaded = load_run(args.checkpoint, device=args.device, **encoder_paths(args))
    if weight is not None:
        conventions = dataclasses.replace(loaded.model.conventions, click_agreement=weight)
        loaded.model.conventions = conventions
    result = evaluate_run(
        loaded.model,
        loaded.class_names,
        loaded.isthing,
        args.data,
        args.split,
        tasks,
        args.seed,
        batch_size=args.batch_size,
        limit=args.limit,
        interactive_objects=args.interactive_objects,
        max_clicks=args.max_clicks,
        out_dir=out_dir,
        progress=not args.no_progress,
        object_threshold=OBJECT_THRESHOLD if threshold is None else threshold,
    )
    result["meta"]["checkpoint"] = str(loaded.checkpoint)
    return result


def run(args: argparse.Namespace) -> int:
    from findvl.evaluation.report import format_report

    result = evaluate_args(args, tuple(args.tasks), args.out)
    print(json.dumps(result) if args.json else format_report(result))
    return 0
