"""The `findvl` command line: a table of subcommands over typed functions.

Each entry names a module in :mod:`findvl.cli` that exposes ``register(parser)``; the module adds
its arguments (and nested subcommands) and sets ``func`` on the parser. Command modules import
heavy dependencies (torch, transformers) inside their functions so ``findvl -h`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys

from findvl.cli.checks import positive_int

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
    "convert": ("findvl.cli.convert", "turn a released FIND checkpoint into a findvl run"),
    "export": ("findvl.cli.export", "export one task's graph (image to masks) to ONNX"),
    "demo": ("findvl.cli.demo", "web page with every task (Gradio, local by default)"),
    "index": ("findvl.cli.index", "embed a folder of images into a searchable index"),
    "search": ("findvl.cli.search", "search an index with an interleaved text + image query"),
}


class CliError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (naming the flag), exit code 2; ``-h`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="findvl",
        description="FIND: one interface over frozen vision and language foundation models.",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        metavar="N",
        help="refuse images with more than N pixels (default 25000000; see docs/errors.md)",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let dataset file names be absolute or contain '..' (read outside the dataset)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module_path, _, function = module_name.partition(":")
        register = getattr(importlib.import_module(module_path), function or "register")
        register(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0 on success, 2 on bad input (one line on stderr), 1 on a bug."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_pixels is not None:
        from findvl.images import set_max_pixels

        set_max_pixels(args.max_pixels)
    if args.allow_outside_root:
        os.environ["FINDVL_ALLOW_OUTSIDE_ROOT"] = "1"  # read by findvl.data.readers.coco.confined
    try:
        result = args.func(args)
    except (CliError, OSError, ValueError) as error:
        # OSError: missing, unreadable or unwritable files and directories (user input too)
        message = " ".join(str(error).split())
        print(f"findvl {args.command}: error: {message}", file=sys.stderr)
        return 2
    except pickle.UnpicklingError as error:
        # torch.load(weights_only=True) met a pickle holding more than tensors (code)
        detail = next((s for s in str(error).splitlines() if "GLOBAL" in s), "").strip()
        print(
            f"findvl {args.command}: error: refused a pickled weights file (pytorch_model.bin or "
            f".pt) that holds more than tensors; use safetensors weights. {detail}".rstrip(),
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"findvl {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
