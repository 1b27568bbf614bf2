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
        help="canvas of the graph, pixels after resizing and padding (default 512 512)",
    )
    parser.add_argument(
        "--prompts",
        type=positive_int,
        default=1,
        help="classes (generic), phrases (grounding) or points (interactive) per call",
    )
    parser.add_argument("--device", default="cpu")
    add_encoder_path_arguments(parser)


def run_onnx(args: argparse.Namespace) -> int:
    from findvl.export import export_onnx
    from findvl.runs import load_run

    check_output_file(args.out)
    check_device(args.device)
    if not args.checkpoint.is_dir():
        raise ValueError(f"--checkpoint {args.checkpoint}: no such directory")
    model = load_run(args.checkpoint, device=args.device, **encoder_paths(args)).model
    multiple = model.vision.norm.pad_multiple
    if any(s % multiple for s in args.size):
        raise ValueError(f"--size {args.size[0]} {args.size[1]}: must be multiples of {multiple}")
    out = export_onnx(model, args.task, args.out, size=tuple(args.size), prompts=args.prompts)
    print(f"wrote {out} ({args.task}, canvas {args.size[0]}x{args.size[1]})")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    help_text = "image encoder + interface + heads of one task as an ONNX graph"
    child = sub.add_parser("onnx", help=help_text, description=help_text)
    _add_onnx(child)
    child.set_defaults(func=run_onnx)
