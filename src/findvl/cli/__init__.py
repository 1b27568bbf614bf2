"""The `findvl` command line: a table of subcommands over typed functions.

Each entry names a module in :mod:`findvl.cli` that exposes ``register(parser)``; the module adds
its arguments (and nested subcommands) and sets ``func`` on the parser. Command modules import
heavy dependencies (torch, transformers) inside their functions so ``findvl -h`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> ("module" or "module:function" whose function registers the arguments, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": (
        "findvl.cli.quickstart",
        "the main job: synthetic data, training, evaluation, report",
    ),
    "prototypes": ("findvl.cli.prototypes", "list task prototypes and show their attention masks"),
    "info": ("findvl.cli.info", "load vision and language encoders and report their features"),
    "data": ("findvl.cli.data", "synthetic world, statistics, visual references, data engine"),
    "pretrain-encoders": (
        "findvl.cli.pretrain",
        "pretrain the tiny vision and text foundation models on synthetic data",
    ),
    "train": ("findvl.cli.train", "train the interface jointly on all six tasks"),
    "evaluate": ("findvl.cli.evaluate", "run a checkpoint on a dataset and report every task"),
    "eval": ("findvl.cli.eval", "evaluate predictions in standard formats"),
    "segment": ("findvl.cli.predict:register_segment", "panoptic segmentation of one image"),
    "ground": ("findvl.cli.predict:register_ground", "one mask per referring phrase"),
    "click": ("findvl.cli.predict:register_click", "interactive segmentation from clicks/boxes"),
}


class CliError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="findvl",
        description="FIND: one interface over frozen vision and language foundation models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module_path, _, function = module_name.partition(":")
        register = getattr(importlib.import_module(module_path), function or "register")
        register(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (CliError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"findvl {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)
