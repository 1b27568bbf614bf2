"""The quickstart report: paper-style tables with chance levels, and pictures (Markdown, HTML)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from markdown_it import MarkdownIt

from findvl.data.readers.dataset import load_dataset
from findvl.index.report import search_section
from findvl.postprocess import OBJECT_THRESHOLD
from findvl.predictor import FindPredictor
from findvl.report_pictures import (
    curves,
    grounding_pictures,
    interactive_pictures,
    interleave_pictures,
    interleave_segmentation_pictures,
    panoptic_pictures,
)
from findvl.tables import METRICS, lookup, result_rows, rows_markdown

#: Grounding-format ground truth written by evaluation, per metrics section.
GROUND_TRUTH_FILES = {
    "grounding": "grounding_gt.json",
    "interleave_segmentation": "interleave_gt.json",
    "interleave_grounding_long": "interleave_long_gt.json",
}

CHANCE_NOTE = (
    "*chance*: retrieval rows give the expected recall of a uniformly random ranking "
    "(IR@K = K/N over N gallery images; TR@K from the number of captions of each image); "
    "grounding rows give the trivial baseline that predicts the whole image for every "
    "phrase or entity; - where there is no cheap baseline."
)

STYLE = (
    "body{font-family:sans-serif;max-width:1600px;margin:auto;padding:1em}"
    "table{border-collapse:collapse}th,td{border:1px solid #999;padding:4px 8px;"
    "text-align:right}td:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}"
)


def recall_chance(k: int, relevant: Sequence[int], gallery: int) -> float | None:
    """Expected recall@``k`` (percent) of a uniformly random ranking of ``gallery`` items.

    ``relevant[q]`` is the number of relevant items of query ``q``; the query is a hit when one
    of them ranks in the top ``k``: ``1 - C(G - r, k) / C(G, k)``. ``None`` without queries.
    """
    if gallery <= 0 or not any(r > 0 for r in relevant):
        return None
    total = math.comb(gallery, min(k, gallery))
    hits = [1 - math.comb(max(0, gallery - r), k) / total for r in relevant if r > 0]
    return 100.0 * sum(hits) / len(hits)


def full_image_baseline(areas: Sequence[int], sizes: Sequence[int]) -> dict[str, float | None]:
    """cIoU / mIoU / P@0.5 (percent) of predicting the whole image for every entity.

    ``areas[i]``: ground-truth pixels of entity ``i``; ``sizes[i]``: pixels of its image (the
    union with a whole-image prediction), so the IoU is ``areas[i] / sizes[i]``.
    """
    a, s = np.asarray(areas, np.float64), np.asarray(sizes, np.float64)
    if a.size == 0:
        return {"cIoU": None, "mIoU": None, "P@0.5": None}
    iou = a / s
    return {
        "cIoU": 100.0 * float(a.sum() / s.sum()),
        "mIoU": 100.0 * float(iou.mean()),
        "P@0.5": 100.0 * float((iou >= 0.5).mean()),
    }


def chance_levels(
    metrics: dict,
    *,
    captions_per_image: Sequence[int],
    full_image: dict[str, dict[str, float | None]],
) -> dict[str, float | None]:
    """:attr:`~findvl.tables.Metric.key` of every metric of :data:`~findvl.tables.METRICS` ->
    its chance level or trivial baseline (None: not known).

    Args:
        metrics: the evaluation results (gallery sizes are read from them).
        captions_per_image: captions of each evaluated image (text retrieval).
        full_image: section -> :func:`full_image_baseline` of its ground truth.
    """
    num_images = lookup(metrics, "meta.num_images") or len(captions_per_image)
    out: dict[str, float | None] = {}
    for metric in METRICS:
        section, name = metric.section, metric.name
        recall = re.fullmatch(r"(IR|TR)@(\d+)", name)
        if recall and recall[1] == "TR":
            level = recall_chance(int(recall[2]), captions_per_image, sum(captions_per_image))
        elif recall:
            gallery = (
                lookup(metrics, f"{section}.num_gallery")
                or lookup(metrics, f"{section}.num_images")
                or num_images
            )
            level = recall_chance(int(recall[2]), [1], gallery)
        else:
            level = full_image.get(section, {}).get(name)
        out[metric.key] = level
    return out


def _full_image_of(path: Path) -> dict[str, float | None]:
    """:func:`full_image_baseline` of a grounding-format ground-truth file ({} if absent)."""
    if not path.is_file():
        return {}
    from pycocotools import mask as mask_utils

    from findvl.metrics.grounding import load_masks

    rles = list(load_masks(path).values())
    sizes = [int(r["size"][0]) * int(r["size"][1]) for r in rles]
    return full_image_baseline([int(mask_utils.area(r)) for r in rles], sizes)


def tables_markdown(metrics: dict, chance: dict[str, float | None] | None = None) -> str:
    """The results table of ``metrics`` in Markdown (:func:`findvl.tables.result_rows`), with a
    chance column when ``chance`` is given."""
    rows = result_rows(metrics, chance)
    return rows_markdown(rows, with_chance=chance is not None) + "\n"


def render_html(markdown: str, *, title: str) -> str:
    """A standalone HTML page of ``markdown`` (CommonMark + tables; raw HTML is escaped)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _figures(predictor, samples, vocab, out: Path, threshold: float) -> list:
    """``(title, explanation, path)`` of every picture."""
    shown, pictures = samples[:8], out / "pictures"
    pair = "The image, its ground truth and the prediction; the legend gives each colour's"
    return [
        (
            "Panoptic segmentation",
            f"{pair} class (segments with class score > {threshold:g}).",
            panoptic_pictures(predictor, shown, vocab, pictures, threshold=threshold),
        ),
        (
            "Grounded segmentation",
            f"{pair} phrase, with the IoU of its mask.",
            grounding_pictures(predictor, shown, pictures),
        ),
        (
            "Interactive segmentation (one click)",
            f"{pair} object; the green dot is the click.",
            interactive_pictures(predictor, shown, vocab, pictures),
        ),
        (
            "Interleaved segmentation",
            f"{pair} entity (one is given by a visual reference from another image).",
            interleave_segmentation_pictures(predictor, shown[:4], samples, pictures),
        ),
        (
            "Interleaved retrieval",
            "The visual reference (titled with the phrase it stands for), the target image "
            "with its rank, then the top-5 images (green frame = the target).",
            interleave_pictures(predictor, samples[:12], samples, pictures),
        ),
        (
            "Training curves",
            "The total loss and each loss term against the training step.",
            curves(out / "run", pictures),
        ),
    ]


def write_report(
    out: Path,
    model,
    vocab,
    root: Path,
    metrics: dict,
    *,
    seed: int = 0,
    eval_dir: Path | None = None,
    threshold: float = OBJECT_THRESHOLD,
) -> None:
    """``report.md``, ``report.html`` and ``pictures/*.png`` under ``out``.

    ``eval_dir`` holds the ground-truth files written by evaluation (default ``out/eval``),
    used for the grounding baselines; ``threshold`` is the panoptic class-score threshold.
    """
    samples = load_dataset(root, "val")
    eval_dir = out / "eval" if eval_dir is None else eval_dir
    chance = chance_levels(
        metrics,
        captions_per_image=[len(s.captions) for s in samples],
        full_image={k: _full_image_of(eval_dir / f) for k, f in GROUND_TRUTH_FILES.items()},
    )
    predictor = FindPredictor(model, seed=seed)
    with torch.no_grad():
        figures = _figures(predictor, samples, vocab, out, threshold)
    train = metrics.get("train", {})
    preset = getattr(getattr(model, "config", None), "preset", "the model")
    md = (
        f"# findvl quickstart\n\n{preset} trained for {train.get('minutes', 0):.1f} min "
        f"({train.get('steps', 0)} steps, seed {metrics.get('seed')}) on the synthetic FIND-Bench; "
        "metrics on its val split, in percent (NoC in clicks).\n\n"
        f"## Metrics\n\n{tables_markdown(metrics, chance)}\n{CHANCE_NOTE}\n\n## Pictures\n\n"
    )
    md += "\n".join(
        f"### {t}\n\n{note}\n\n![{t}]({p.relative_to(out).as_posix()})\n" for t, note, p in figures
    )
    with torch.no_grad():
        md += "\n" + search_section(
            model, samples, out / "pictures", link_root=out, queries=3, k=5, seed=seed
        )
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(render_html(md, title="findvl quickstart"))
