"""The quickstart report: paper-style tables and pictures (Markdown and HTML)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from findvl import viz
from findvl.data.clicks import next_click
from findvl.data.dataset import Sample, load_dataset
from findvl.data.training import load_rgb
from findvl.model.requests import Entity, InterleavedText, VisualPrompt, VisualReference
from findvl.model.sampler import rasterize
from findvl.predictor import FindPredictor

#: (section, [(column, metric path)]) laid out like the paper's Tables 3-4.
TABLES = [
    (
        "Generic segmentation (class names)",
        [("PQ", "panoptic.PQ"), ("mAP", "instance.AP"), ("mIoU", "semantic.mIoU")],
    ),
    (
        "Grounded segmentation (refs)",
        [("cIoU", "grounding.cIoU"), ("mIoU", "grounding.mIoU"), ("P@0.5", "grounding.P@0.5")],
    ),
    (
        "Interactive segmentation",
        [
            ("mIoU@1", "interactive.mIoU@1"),
            ("mIoU@5", "interactive.mIoU@5"),
            ("NoC@85", "interactive.NoC@85"),
            ("NoC@90", "interactive.NoC@90"),
        ],
    ),
    (
        "Image-text retrieval",
        [("IR@1", "retrieval.IR@1"), ("TR@1", "retrieval.TR@1"), ("IR@5", "retrieval.IR@5")],
    ),
    (
        "Interleaved segmentation",
        [
            ("cIoU", "interleave_segmentation.cIoU"),
            ("mIoU", "interleave_segmentation.mIoU"),
            ("AP50", "interleave_segmentation.P@0.5"),
        ],
    ),
    (
        "Interleaved retrieval",
        [
            ("IR@5", "interleave_retrieval.IR@5"),
            ("IR@10", "interleave_retrieval.IR@10"),
            ("avg-emb IR@5", "baselines.embedding_average.IR@5"),
            ("text-only IR@5", "baselines.text_only.IR@5"),
        ],
    ),
    (
        "Zero-shot interleaved grounding (long paragraphs)",
        [
            ("cIoU", "interleave_grounding_long.cIoU"),
            ("mIoU", "interleave_grounding_long.mIoU"),
            ("P@0.5", "interleave_grounding_long.P@0.5"),
        ],
    ),
]


def lookup(metrics: dict, path: str):
    """``metrics["a"]["b"]`` for ``"a.b"``; keys may hold dots themselves (``"P@0.5"``)."""
    if path in metrics:
        return metrics[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if isinstance(metrics.get(head), dict):
            found = lookup(metrics[head], ".".join(parts[i:]))
            if found is not None:
                return found
    return None


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def _image(sample: Sample) -> torch.Tensor:
    return torch.from_numpy(load_rgb(sample.image_path).copy()).permute(2, 0, 1)


def panoptic_pictures(predictor, samples, vocab, out: Path) -> Path:
    tiles = []
    for s in samples:
        predictor.set_image(_image(s))
        res = predictor.segment(vocab.names, isthing=vocab.isthing, object_threshold=0.5)
        masks = (
            np.stack([(res.segmentation == g["id"]).numpy() for g in res.segments])
            if res.segments
            else np.zeros((0, *res.segmentation.shape), bool)
        )
        labels = [vocab.names[g["category"]] for g in res.segments]
        tiles.append(
            viz.captioned(viz.overlay(_image(s), masks, labels=labels), f"image {s.image_id}")
        )
    return viz.save(viz.grid(tiles, 4), out / "panoptic.png")


def grounding_pictures(predictor, samples, out: Path) -> Path:
    tiles = []
    for s in samples:
        if not s.refs:
            continue
        phrase = s.refs[0].sentences[0].sent
        predictor.set_image(_image(s))
        res = predictor.ground([phrase])
        tiles.append(viz.captioned(viz.overlay(_image(s), res.masks), phrase, width=200))
    return viz.save(viz.grid(tiles, 4), out / "grounding.png")


def interactive_pictures(predictor, samples, out: Path) -> Path:
    tiles = []
    for s in samples:
        masks = s.panoptic.load_masks()
        things = [i for i, g in enumerate(s.panoptic.segments) if g.isthing]
        if not things:
            continue
        gt = masks[things[0]]
        click = next_click(gt)
        prompt = VisualPrompt(rasterize(gt.shape, points=[(click.x, click.y)], radius=3))
        predictor.set_image(_image(s))
        res = predictor.click([prompt])
        iou = float((res.masks[0].numpy() & gt).sum() / max(1, (res.masks[0].numpy() | gt).sum()))
        pic = viz.draw_clicks(viz.overlay(_image(s), res.masks), [(click.y, click.x, True)])
        tiles.append(viz.captioned(pic, f"1 click, IoU {100 * iou:.0f}"))
    return viz.save(viz.grid(tiles, 4), out / "interactive.png")


def _interleave_query(
    sample: Sample, by_id: dict[int, Sample]
) -> tuple[InterleavedText, list[Image.Image]] | None:
    for cap in sample.entities:
        entities, crops = [], []
        for p in cap.spans:
            ref = p.reference
            if ref is not None and ref.image_id in by_id and not crops:
                other = by_id[ref.image_id]
                ids = [g.id for g in other.panoptic.segments]
                if ref.annotation_id not in ids:
                    continue
                mask = other.panoptic.load_masks()[ids.index(ref.annotation_id)]
                img = _image(other)
                entities.append(
                    Entity(
                        p.start, p.end, VisualReference(img, VisualPrompt(torch.from_numpy(mask)))
                    )
                )
                ys, xs = np.nonzero(mask)
                crop = Image.fromarray(viz.to_hwc(img)).crop(
                    (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                )
                crops.append(crop.resize((48, 48)))
            else:
                entities.append(Entity(p.start, p.end))
        if crops:
            return InterleavedText(cap.sentence, entities), crops
    return None


def interleave_pictures(predictor, samples, gallery, out: Path) -> Path:
    by_id = {s.image_id: s for s in gallery}
    embeddings = []
    for s in gallery:
        predictor.set_image(_image(s))
        embeddings.append(predictor.embed_image())
    bank = F.normalize(torch.stack(embeddings), dim=-1)
    rows = []
    for s in samples:
        found = _interleave_query(s, by_id)
        if found is None:
            continue
        query, crops = found
        q = F.normalize(predictor.embed_query(query), dim=-1)
        top = (bank @ q).topk(min(5, len(gallery))).indices.tolist()
        thumbs = [crops[0].resize((64, 64))]
        for j in top:
            img = Image.fromarray(viz.to_hwc(_image(gallery[j]))).resize((64, 64))
            if gallery[j].image_id == s.image_id:
                img = viz.overlay(
                    np.asarray(img), np.ones((1, 64, 64), bool), colors=[(0, 255, 0)], alpha=0.25
                )
            thumbs.append(img)
        rows.append(viz.captioned(viz.grid(thumbs, len(thumbs), pad=2), query.text, width=6 * 70))
        if len(rows) == 4:
            break
    return viz.save(viz.grid(rows, 1), out / "interleave_retrieval.png")


def curves(run_dir: Path, out: Path) -> Path:
    records = [
        json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines() if line
    ]
    keys = [
        "class_ce",
        "mask_dice",
        "grounding_ce",
        "spatial_ce",
        "interleave_ce",
        "retrieval",
        "interleave_itc",
    ]
    series = {k: [(r["step"], r[k]) for r in records if k in r] for k in keys}
    total = {"total": [(r["step"], r["total"]) for r in records]}
    pic = viz.grid(
        [viz.line_plot(total, title="total loss"), viz.line_plot(series, title="loss terms")], 2
    )
    return viz.save(pic, out / "training_curves.png")


def tables_markdown(metrics: dict) -> str:
    lines = []
    for title, cols in TABLES:
        lines += [
            f"### {title}",
            "",
            "| " + " | ".join(c for c, _ in cols) + " |",
            "|" + "---|" * len(cols),
        ]
        lines.append("| " + " | ".join(_fmt(lookup(metrics, p)) for _, p in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, model, vocab, root: Path, metrics: dict, *, seed: int = 0) -> None:
    """``report.md``, ``report.html`` and ``pictures/*.png`` under ``out``."""
    pictures = out / "pictures"
    samples = load_dataset(root, "val")
    shown = samples[:8]
    predictor = FindPredictor(model, seed=seed)
    with torch.no_grad():
        figures = [
            ("Panoptic segmentation", panoptic_pictures(predictor, shown, vocab, pictures)),
            ("Grounded segmentation", grounding_pictures(predictor, shown, pictures)),
            (
                "Interactive segmentation (one click)",
                interactive_pictures(predictor, shown, pictures),
            ),
            (
                "Interleaved retrieval: reference crop, then the top-5 images (green = the target)",
                interleave_pictures(predictor, samples[:12], samples, pictures),
            ),
            ("Training curves", curves(out / "run", pictures)),
        ]
    train = metrics.get("train", {})
    head = (
        f"# findvl quickstart\n\nfind_tiny trained for {train.get('minutes', 0):.1f} min "
        f"({train.get('steps', 0)} steps, seed {metrics.get('seed')}) on the synthetic FIND-Bench; "
        "metrics on its val split, in percent (NoC in clicks).\n\n"
    )
    md = head + tables_markdown(metrics) + "\n"
    md += "\n".join(f"### {t}\n\n![{t}]({p.relative_to(out)})\n" for t, p in figures)
    (out / "report.md").write_text(md)
    body = "".join(
        f"<h3>{html.escape(t)}</h3><img src='{html.escape(str(p.relative_to(out)))}'>"
        for t, p in figures
    )
    tables = "".join(
        "<h3>{}</h3><table border=1 cellpadding=4><tr>{}</tr><tr>{}</tr></table>".format(
            html.escape(title),
            "".join(f"<th>{html.escape(c)}</th>" for c, _ in cols),
            "".join(f"<td>{_fmt(lookup(metrics, p))}</td>" for _, p in cols),
        )
        for title, cols in TABLES
    )
    page = (
        "<html><head><meta charset='utf-8'><title>findvl quickstart</title></head>"
        f"<body><p>{html.escape(head)}</p>{tables}{body}</body></html>"
    )
    (out / "report.html").write_text(page)
