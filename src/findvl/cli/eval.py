"""``findvl eval SUB``: score prediction files in standard formats (see docs/formats.md).

Each subcommand prints the results table of every findvl command (:mod:`findvl.tables`: task,
metric, value; a metric is named by its key in ``findvl evaluate --json``) and the counts, or
exactly one JSON object on stdout with ``--json``. Metric values are percentages; progress bars
go to stderr. Nothing here runs a model: scores that need one (interactive clicks) come from
``findvl evaluate RUN --tasks interactive``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from findvl.tables import format_table, result_rows, rows_text


def _emit(args: argparse.Namespace, result: Any, table: Callable[[], str]) -> int:
    print(json.dumps(result.to_dict()) if args.json else table())
    return 0


def _results_table(metrics: dict, footer: str) -> str:
    """The results layout of every table (:func:`findvl.tables.result_rows`), then counts."""
    return f"{rows_text(result_rows(metrics))}\n\n{footer}"


def _run_instances(args: argparse.Namespace) -> int:
    from findvl.metrics.instances import evaluate_instances

    result = evaluate_instances(args.gt, args.pred)

    def table() -> str:
        metrics = {
            section: vars(m)
            for section, m in (("instance", result.segm), ("instance_bbox", result.bbox))
            if m is not None
        }
        footer = f"images: {result.num_images}  predictions: {result.num_predictions}"
        return _results_table(metrics, footer)

    return _emit(args, result, table)


def _run_panoptic(args: argparse.Namespace) -> int:
    from findvl.metrics.panoptic import evaluate_panoptic

    result = evaluate_panoptic(
        args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, workers=args.workers
    )

    def table() -> str:
        parts = (("", result.All), ("_things", result.Things), ("_stuff", result.Stuff))
        panoptic = {
            f"{k}{suffix}": getattr(s, k) for suffix, s in parts for k in ("PQ", "SQ", "RQ")
        }
        text = _results_table(
            {"panoptic": panoptic},
            f"categories: {result.All.n} (things {result.Things.n}, stuff {result.Stuff.n})"
            f"  images: {result.num_images}",
        )
        if args.per_class:
            rows = [[c.name, c.PQ, c.SQ, c.RQ, c.TP, c.FP, c.FN] for c in result.per_class]
            text += "\n\n" + format_table(("category", "PQ", "SQ", "RQ", "TP", "FP", "FN"), rows)
        return text

    return _emit(args, result, table)


def _run_semantic(args: argparse.Namespace) -> int:
    from findvl.metrics.semantic import evaluate_semantic

    result = evaluate_semantic(
        args.gt_dir, args.pred_dir, ignore=args.ignore, num_classes=args.num_classes
    )

    def table() -> str:
        semantic = {
            "mIoU": result.mIoU,
            "fwIoU": result.fwIoU,
            "pACC": result.pixel_accuracy,
            "mACC": result.mean_accuracy,
        }
        text = _results_table({"semantic": semantic}, f"classes: {result.num_classes}")
        if args.per_class:
            rows = [[c, iou] for c, iou in enumerate(result.per_class_iou)]
            text += "\n\n" + format_table(("class", "IoU"), rows)
        return text

    return _emit(args, result, table)


def _run_grounding(args: argparse.Namespace) -> int:
    from findvl.metrics.grounding import evaluate_grounding

    result = evaluate_grounding(args.gt, args.pred)

    def table() -> str:
        grounding = {"cIoU": result.cIoU, "mIoU": result.mIoU, **result.precision}
        footer = f"entities: {result.num_entities}  missing: {result.num_missing}"
        return _results_table({"grounding": grounding}, footer)

    return _emit(args, result, table)


def _run_retrieval(args: argparse.Namespace) -> int:
    from findvl.metrics.retrieval import evaluate_retrieval

    result = evaluate_retrieval(args.scores, args.gt, text_retrieval=not args.no_text_retrieval)

    def table() -> str:
        footer = f"queries: {result.num_queries}  gallery: {result.num_gallery}"
        return _results_table({"retrieval": dict(result.recall)}, footer)

    return _emit(args, result, table)


def _add_instances(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="COCO instances JSON")
    parser.add_argument("--pred", required=True, help="COCO results JSON (list of detections)")
    parser.set_defaults(func=_run_instances)


def _add_panoptic(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-json", required=True, help="COCO panoptic JSON with categories")
    parser.add_argument("--gt-dir", required=True, help="folder of ground-truth panoptic PNGs")
    parser.add_argument("--pred-json", required=True, help="predicted panoptic JSON")
    parser.add_argument("--pred-dir", required=True, help="folder of predicted panoptic PNGs")
    parser.add_argument("--workers", type=int, default=1, help="reader threads (default 1)")
    parser.add_argument("--per-class", action="store_true", help="also print every category")
    parser.set_defaults(func=_run_panoptic)


def _add_semantic(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-dir", required=True, help="folder of ground-truth label PNGs")
    parser.add_argument("--pred-dir", required=True, help="folder of predicted label PNGs")
    parser.add_argument("--ignore", type=int, default=255, help="label not evaluated (255)")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes (default: largest label + 1)",
    )
    parser.add_argument("--per-class", action="store_true", help="also print every class IoU")
    parser.set_defaults(func=_run_semantic)


def _add_grounding(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="ground-truth masks JSON (grounding format)")
    parser.add_argument("--pred", required=True, help="predicted masks JSON (grounding format)")
    parser.set_defaults(func=_run_grounding)


def _add_retrieval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores", required=True, help=".npz with scores[Q,G], query_ids[Q], gallery_ids[G]"
    )
    parser.add_argument("--gt", required=True, help="JSON: query id -> list of gallery ids")
    parser.add_argument(
        "--no-text-retrieval", action="store_true", help="skip TR@K (the transposed direction)"
    )
    parser.set_defaults(func=_run_retrieval)


# name -> (argument builder, one-line help)
SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], str]] = {
    "instances": (_add_instances, "COCO instance AP for masks and boxes (pycocotools)"),
    "panoptic": (_add_panoptic, "PQ / SQ / RQ on COCO panoptic JSON + PNG folders"),
    "semantic": (_add_semantic, "mIoU, fwIoU and accuracies on label PNG folders"),
    "grounding": (_add_grounding, "cIoU, mIoU, P@t for grounded or interleaved segmentation"),
    "retrieval": (_add_retrieval, "IR@K / TR@K from a score matrix"),
}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="eval_command", metavar="SUB", required=True)
    for name, (add_arguments, help_text) in SUBCOMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(child)
        child.add_argument(
            "--json", action="store_true", help="print one JSON object instead of a table"
        )
