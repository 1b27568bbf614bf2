"""``findvl index``: embed a folder of images into a searchable index, show an index."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from findvl.index.backends import KINDS


def _add_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="run or checkpoint dir")
    parser.add_argument("--images", type=Path, required=True, help="folder of images (recursive)")
    parser.add_argument("--out", type=Path, required=True, help="index directory")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images per forward (8; an index keeps its own)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted build or add new files"
    )
    parser.add_argument("--ann", choices=KINDS, default="auto", help="first-stage kind (auto)")
    parser.add_argument(
        "--exact-below", type=int, default=50_000, help="auto: exact search below this size"
    )
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists visited per query (16)")
    parser.add_argument(
        "--milvus-uri",
        default=None,
        help="first stage in Milvus: a server URI or a local milvus-lite .db file",
    )
    parser.add_argument(
        "--rank",
        type=int,
        default=None,
        help="this process's rank (under torchrun: RANK); it embeds every world-size-th batch",
    )
    parser.add_argument(
        "--world-size",
        type=int,
        default=None,
        help="processes embedding the collection (under torchrun: WORLD_SIZE); then `index merge`",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK) or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _ranks(args: argparse.Namespace) -> tuple[int, int]:
    """``(rank, world size)``: the flags, else torchrun's environment, else a single process."""
    under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ
    rank, world = args.rank, args.world_size
    if rank is None:
        rank = int(os.environ.get("RANK", 0)) if under_torchrun else 0
    if world is None:
        world = int(os.environ.get("WORLD_SIZE", 1)) if under_torchrun else 1
    _positive("--world-size", world)
    if not 0 <= rank < world:
        raise ValueError(f"--rank: {rank} is not in 0..{world - 1}")
    return rank, world


def _device(name: str) -> str:
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return name


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value}")


def _run_build(args: argparse.Namespace) -> int:
    for name in ("batch_size", "exact_below", "nprobe", "threads"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name))
    if not args.images.is_dir():
        raise FileNotFoundError(f"--images: no directory at {args.images}")
    import torch

    from findvl.index.backends import AnnSettings
    from findvl.index.build import build_index, open_for_build
    from findvl.index.manifest import ModelFingerprint
    from findvl.runs import load_run

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.rank, args.world_size = _ranks(args)
    loaded = load_run(args.checkpoint, device=_device(args.device))
    ann = AnnSettings(args.ann, exact_below=args.exact_below, nprobe=args.nprobe)
    if args.world_size > 1:
        return _build_part(args, loaded, ann)
    index = open_for_build(
        args.out,
        ModelFingerprint.of_run(loaded),
        images_dir=args.images,
        resume=args.resume,
        batch_size=args.batch_size,
        ann=ann,
        milvus_uri=args.milvus_uri,
        model=loaded.model,
    )
    report = build_index(index, args.images, progress=not args.no_progress)
    return _summary(report, args.out)


def _summary(report, out: Path, **extra) -> int:
    for item in report.skipped:
        print(f"findvl index build: skipped {item['path']}: {item['error']}", file=sys.stderr)
    summary = {
        "added": report.added,
        "skipped": len(report.skipped),
        "total": report.total,
        "seconds": round(report.seconds, 3),
        "index": str(out),
        **extra,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def _build_part(args: argparse.Namespace, loaded, ann) -> int:
    from findvl.index.manifest import ModelFingerprint
    from findvl.index.parallel import build_part, part_dir

    folder = part_dir(args.out, args.rank, args.world_size)
    if (folder / "manifest.json").is_file() and not args.resume:
        raise FileExistsError(f"--out: {folder} exists (pass --resume to continue it)")
    report = build_part(
        args.out,
        args.images,
        rank=args.rank,
        world=args.world_size,
        fingerprint=ModelFingerprint.of_run(loaded),
        model=loaded.model,
        batch_size=args.batch_size,
        ann=ann,
        milvus_uri=args.milvus_uri,
        progress=not args.no_progress and args.rank == 0,
    )
    return _summary(report, folder, rank=args.rank, world_size=args.world_size)


def _add_merge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", type=Path, help="index directory holding parts/ to merge")


def _run_merge(args: argparse.Namespace) -> int:
    from findvl.index.parallel import merge_parts

    return _summary(merge_parts(args.index), args.index)


def _add_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", type=Path, help="index directory")


def _run_info(args: argparse.Namespace) -> int:
    from findvl.index.manifest import IndexManifest

    print(json.dumps(IndexManifest.load(args.index).to_dict(), indent=1, sort_keys=True))
    return 0


SUBCOMMANDS = {
    "build": (_add_build, _run_build, "embed a folder of images into an index (resumable)"),
    "merge": (_add_merge, _run_merge, "merge the parts embedded by several ranks into one index"),
    "info": (_add_info, _run_info, "print an index's manifest"),
}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``index`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)
    for name, (add_arguments, run, help_text) in SUBCOMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(child)
        child.set_defaults(func=run)
