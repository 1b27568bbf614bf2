"""``findvl pretrain-encoders``: train the tiny image and text towers FIND runs on (CLIP-style).

Example (the shipped ``src/findvl/pretrained/``, see its README.md)::

    findvl data synth --out data/synth --images 3000 --split train --size 64 --seed 0 \\
        --holdout-combos
    findvl data synth --out data/synth --images 100 --split val --size 64 --seed 1 \\
        --holdout-combos
    findvl pretrain-encoders --data data/synth --out src/findvl/pretrained --steps 1800 \\
        --seed 0 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from findvl.cli.checks import positive_int


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset root with a train split")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory (synth-clip-vision/, synth-clip-text/, logs, pretrain.json)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps", type=positive_int, default=None, help="optimiser steps (default 1800)"
    )
    budget.add_argument(
        "--minutes", type=float, default=None, help="wall-clock budget instead of a step count"
    )
    parser.add_argument(
        "--vision",
        choices=("vit", "resnet", "regnet", "convnext"),
        default="vit",
        help="image tower: a CLIP ViT (default, the shipped synth-clip-vision: one grid, FIND "
        "adds a pyramid), a ResNet (the shipped resnet/, the quickstart's: its stages are "
        "FIND's levels, on the images resized to 128 px; use --steps 2400), a RegNet or a "
        "ConvNeXt",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="images per step (default 32)"
    )
    parser.add_argument(
        "--eval-split",
        default="val",
        help="split measured at the end when the data has it (default val; 'none' skips)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--hard-negatives",
        action="store_true",
        help="add shape/colour-swapped captions as image->text negatives (NegCLIP); "
        "measured: no gain for the shipped tiny ViT, whose image side does not see shapes",
    )
    parser.add_argument(
        "--binding-negatives",
        action="store_true",
        help="add the captions with colours, sizes or shapes exchanged between two objects, "
        "or a relation turned round, as image->text negatives (towers that bind attributes)",
    )
    parser.add_argument(
        "--colour-weight",
        type=float,
        default=None,
        help="weight of colour heads on every level of a hierarchical image tower: each "
        "cell's thing colours (default 0: none)",
    )
    parser.add_argument(
        "--thing-weight",
        type=float,
        default=None,
        help="extra factor on the dense loss weight of thing classes (default 1)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from findvl.pretrain.config import PretrainConfig
    from findvl.pretrain.run import pretrain_encoders

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = PretrainConfig()
    if args.vision != cfg.vision.kind:
        cfg.vision = _tower_defaults(args.vision)
    cfg.optim.seed = args.seed
    if args.minutes is not None:
        cfg.optim.steps, cfg.optim.minutes = None, args.minutes
    elif args.steps is not None:
        cfg.optim.steps = args.steps
    if args.batch_size is not None:
        cfg.optim.batch_size = args.batch_size
    cfg.objective.hard_negatives = args.hard_negatives
    cfg.objective.binding_negatives = args.binding_negatives
    if args.colour_weight is not None:
        if args.colour_weight < 0 or (args.colour_weight and args.vision == "vit"):
            print(
                f"--colour-weight: must be >= 0, with a hierarchical --vision, got "
                f"{args.colour_weight} with --vision {args.vision}",
                file=sys.stderr,
            )
            return 2
        cfg.objective.colour_weight = args.colour_weight
    if args.thing_weight is not None:
        if args.thing_weight <= 0:
            print(f"--thing-weight: must be positive, got {args.thing_weight}", file=sys.stderr)
            return 2
        cfg.objective.thing_weight = args.thing_weight
    eval_split = None if args.eval_split.lower() == "none" else args.eval_split
    report = pretrain_encoders(
        args.data, args.out, cfg, eval_split=eval_split, overwrite=args.overwrite,
        progress=not args.no_progress,
    )  # fmt: skip
    summary = {
        "vision": report.vision_dir,
        "text": report.text_dir,
        "longest_side": report.longest_side,
        "grid_stride": report.grid_stride,
        "steps": report.summary.steps,
        "wall_s": round(report.summary.wall_s, 1),
    }
    if report.metrics is not None:
        summary[f"{report.eval_split}_r1"] = {
            "image_to_text": round(report.metrics.recall_at_1.image_to_text, 2),
            "text_to_image": round(report.metrics.recall_at_1.text_to_image, 2),
        }
        summary[f"{report.eval_split}_dense_acc"] = round(report.metrics.dense.all_patches, 2)
    print(json.dumps(summary))
    return 0


def _tower_defaults(kind: str):
    """The image tower of ``kind`` at the sizes its ``VisionTowerConfig`` documents."""
    from findvl.pretrain.config import VisionTowerConfig

    if kind == "regnet":
        return VisionTowerConfig(kind="regnet")
    if kind == "resnet":
        return VisionTowerConfig(
            kind="resnet", image_size=128, hidden_sizes=(32, 64, 96, 128), depths=(1, 3, 3, 1)
        )
    return VisionTowerConfig(
        kind="convnext", patch_size=2, hidden_sizes=(32, 48, 64, 96), depths=(1, 1, 2, 1)
    )
