"""`findvl prototypes list|show`: the task prototypes and their attention masks (Fig. 2c)."""

from __future__ import annotations

import argparse
import json

from findvl.prototypes import DEFAULT_VARIANT, TASKS, VARIANTS, Prototype, get_prototype


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="list the tasks")
    listing.set_defaults(func=run_list)
    show = sub.add_parser("show", help="show one task's groups and attention masks")
    show.add_argument("task", choices=TASKS)
    show.add_argument("--variant", choices=VARIANTS, default=DEFAULT_VARIANT)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    for task in TASKS:
        proto = get_prototype(task)
        groups = " ".join(g for g in proto.groups if g != "f.image")
        print(f"{task:26s} {groups}")
    return 0


def format_grid(names: list[str], matrix) -> str:
    """A readable attention grid: rows attend the columns marked with ``#``."""
    width = max(len(n) for n in names)
    header = " " * (width + 1) + " ".join(f"{i:>2d}" for i in range(len(names)))
    lines = [header]
    for i, (name, row) in enumerate(zip(names, matrix)):
        cells = " ".join(" #" if v else " ." for v in row)
        lines.append(f"{name:>{width}s} {cells}   ({i})")
    return "\n".join(lines)


def render(proto: Prototype) -> str:
    groups = proto.group_objects()
    lines = [f"{proto.task} ({proto.variant})", ""]
    for i, g in enumerate(groups):
        lines.append(f"  {i:2d} {g.name:14s} {g.kind:9s} {g.modality}")
    lines += ["", "content attention (row attends column):"]
    lines.append(format_grid([g.name for g in groups], proto.content_matrix()))
    lines += ["", "conditional attention:"]
    names = [g.name for g in groups if g.name != "f.image"]
    lines.append(format_grid(names, proto.condition_matrix()))
    if proto.optional:
        lines += ["", f"optional groups: {', '.join(proto.optional)}"]
    return "\n".join(lines)


def run_show(args: argparse.Namespace) -> int:
    proto = get_prototype(args.task, args.variant)
    print(json.dumps(proto.to_json()) if args.json else render(proto))
    return 0
