"""`findvl export onnx --checkpoint RUN --task TASK --out FILE.onnx`: one task as an ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from findvl.cli.checks import check_device, check_output_file, positive_int
from findvl.cli.evaluate import add_encoder_path_arguments, encoder_paths

TASKS = ("generic", "grounding", "interactive")  # findvl.export.EXPORT_TASKS, without torch


def _add_onnx(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="run or checkpoint dir")
    parser.add_argument("--task", choices=TASKS, required=True, help="the task of the graph")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        default=(512, 512),
        metavar=("H", "W"),
        help="canvas the graph is traced with, pixels after resizing and padding (default "
        "512 512); the graph takes any canvas whose sides are multiples of the model's size "
        "multiple (32 for the shipped encoders), from twice it to 4096, unless --static",
    )
    parser.add_argument(
        "--prompts",
        type=positive_int,
        default=2,
        help="classes (generic), phrases (grounding) or points (interactive) traced with; the "
        "graph takes any count (and any phrase length) unless --static (default 2)",
    )
    parser.add_argument(
        "--static",
        action="store_true",
        help="fix the graph to --size and --prompts (always fixed: one image per call and, "
        "for interactive, one prompt per call)",
    )
    parser.add_argument("--device", default="cpu")
    add_encoder_path_arguments(parser)


def run_onnx(args: argparse.Namespace) -> int:
    from findvl.export import export_onnx, size_multiple
    from findvl.runs import load_run

    check_output_file(args.out)
    check_device(args.device)
    if not args.checkpoint.is_dir():
        raise ValueError(f"--checkpoint {args.checkpoint}: no such directory")
    model = load_run(args.checkpoint, device=args.device, **encoder_paths(args)).model
    multiple = size_multiple(model)
    least = multiple if args.static else 2 * multiple
    if any(s % multiple or s < least for s in args.size):
        raise ValueError(
            f"--size {args.size[0]} {args.size[1]}: must be multiples of {multiple}, "
            f"at least {least}"
        )
    out = export_onnx(
        model,
        args.task,
        args.out,
        size=tuple(args.size),
        prompts=args.prompts,
        dynamic=not args.static,
    )
    shapes = (
        f"canvas {args.size[0]}x{args.size[1]}, {args.prompts} prompts"
        if args.static
        else f"any canvas of multiples of {multiple}, any prompt count"
    )
    print(f"wrote {out} ({args.task}, {shapes})")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    help_text = "image encoder + interface + heads of one task as an ONNX graph"
    child = sub.add_parser("onnx", help=help_text, description=help_text)
    _add_onnx(child)
    child.set_defaults(func=run_onnx)
