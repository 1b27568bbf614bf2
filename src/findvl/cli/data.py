"""``findvl data``: synthesise the FIND-Bench world, print statistics, add visual references."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from findvl.cli.checks import positive_int


def _add_synth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output root")
    parser.add_argument("--images", type=positive_int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--size", type=positive_int, default=128, help="image side in pixels")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument(
        "--holdout-combos",
        action="store_true",
        help="keep the held-out colour x shape pairs out of train and show them in val",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the split if it already exists"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_synth(args: argparse.Namespace) -> int:
    from findvl.data.synth.write import SynthConfig, write_synth

    config = SynthConfig(
        out=args.out,
        images=args.images,
        seed=args.seed,
        size=args.size,
        split=args.split,
        holdout_combos=args.holdout_combos,
    )
    counts = write_synth(config, overwrite=args.overwrite, progress=not args.no_progress)
    print(json.dumps(counts, sort_keys=True))
    return 0


def _add_stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    parser.add_argument("--split", required=True, help="split name, e.g. val or val2017")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_stats(args: argparse.Namespace) -> int:
    from findvl.data.readers.stats import entity_stats
    from findvl.tables import format_table

    rows = entity_stats(args.data, args.split)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], sort_keys=True))
    else:
        header = ("file", "images", "captions", "entities", "mask", "phrase", "visual")
        print(format_table(header, [list(r.as_dict().values()) for r in rows]))
    return 0


def _add_references(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    parser.add_argument("--split", required=True, help="split name, e.g. val or val2017")
    parser.add_argument("--out", type=Path, default=None, help="output (default: in place)")
    parser.add_argument("--long", action="store_true", help="use entity_{split}_long.json")
    parser.add_argument(
        "--embedder",
        choices=("tiny", "appearance"),
        default="tiny",
        help="segment embedder: features of a seeded TinyBackbone, or colour/shape statistics",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny backbone")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_references(args: argparse.Namespace) -> int:
    from findvl.data.engine.references import AppearanceEmbedder, write_references

    if args.embedder == "tiny":
        from findvl.data.engine.reference_vision import tiny_vision_embedder

        embedder = tiny_vision_embedder(args.seed)
    else:
        embedder = AppearanceEmbedder()
    result = write_references(
        args.data,
        args.split,
        embedder,
        suffix="_long" if args.long else "",
        out=args.out,
        progress=not args.no_progress,
    )
    spans = [s for c in result.captions for s in c.spans]
    found = sum(s.reference is not None for s in spans)
    print(json.dumps({"phrases": len(spans), "with_reference": found}, sort_keys=True))
    return 0


# name -> (add arguments, run, one-line help)
SUBCOMMANDS: dict[
    str,
    tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str],
] = {
    "synth": (_add_synth, _run_synth, "write the synthetic FIND-Bench world"),
    "stats": (_add_stats, _run_stats, "entity statistics (images, captions, associations)"),
    "references": (_add_references, _run_references, "add visual references to entity phrases"),
}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` subcommands to ``parser``."""
    from findvl.cli import data_engine

    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name, (add_arguments, run, help_text) in SUBCOMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(child)
        child.set_defaults(func=run)
    engine_help = "write FIND-Bench entity captions with an OpenAI-compatible chat server"
    data_engine.register(sub.add_parser("engine", help=engine_help, description=engine_help))
