"""Pictures of the quickstart report: each task's predictions beside the ground truth.

Every ``*_pictures`` function answers a few samples with a predictor (anything with the
:class:`~findvl.predictor.FindPredictor` methods it calls) and saves one PNG grid under ``out``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from findvl import viz
from findvl.data.clicks import next_click
from findvl.data.readers.dataset import Sample
from findvl.data.readers.findbench import EntityPhrase
from findvl.data.readers.vocabulary import Vocabulary
from findvl.evaluation.common import SegmentMasks, VisualQuery, visual_query
from findvl.images import read_image_tensor
from findvl.model.requests import VisualPrompt
from findvl.model.sampler import rasterize

LONG_SIDE = 256  # segmentation pictures: nearest-neighbour upscaling to at least this
THUMB_SIDE = 192  # retrieval thumbnails


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    return float((a & b).sum() / max(1, (a | b).sum()))


def _segment_masks(sample: Sample, segment_ids: list[int]) -> np.ndarray:
    """``[T,H,W]`` bool ground-truth masks of the panoptic segments ``segment_ids``."""
    ids = [g.id for g in sample.panoptic.segments]
    masks = sample.panoptic.load_masks()
    return masks[[ids.index(i) for i in segment_ids]].reshape(-1, *masks.shape[1:])


def _entity_tile(
    image: torch.Tensor,
    truth: np.ndarray,
    predicted: np.ndarray,
    texts: list[str],
    caption: str = "",
    **kw,
) -> Image.Image:
    """One colour per entity; ``truth`` / ``predicted`` are ``[T,H,W]`` masks of ``texts``,
    whose legend entries add the IoU of each mask."""
    colors = viz.palette(len(texts))
    entries = [
        (f"{t} (IoU {100 * _iou(g, m):.0f})", c)
        for t, g, m, c in zip(texts, truth, predicted, colors)
    ]
    tile = viz.compare(
        image, truth, predicted, entries, truth_colors=colors, long_side=LONG_SIDE, **kw
    )
    return viz.captioned(tile, caption) if caption else tile


def _save_grid(tiles: list[Image.Image], path: Path) -> Path:
    """Two tiles a row, saved as ``path``."""
    return viz.save(viz.grid(tiles, 2, pad=12), path)


def panoptic_pictures(
    predictor, samples: Sequence[Sample], vocab: Vocabulary, out: Path, *, threshold: float
) -> Path:
    """Panoptic segmentation over ``vocab`` at class-score ``threshold``; one colour per class."""
    class_of = vocab.index
    tiles = []
    for s in samples:
        image = read_image_tensor(s.image_path)
        predictor.set_image(image)
        res = predictor.segment(vocab.names, isthing=vocab.isthing, object_threshold=threshold)
        gt_all = s.panoptic.load_masks()
        pred = np.array([(res.segmentation == g["id"]).numpy() for g in res.segments], bool)
        pred_classes = [g["category"] for g in res.segments]
        gt = [(m, class_of.get(g.category_id)) for m, g in zip(gt_all, s.panoptic.segments)]
        gt = [(m, c) for m, c in gt if c is not None]
        shown = sorted({c for _, c in gt} | set(pred_classes))
        color = dict(zip(shown, viz.palette(len(shown))))
        tile = viz.compare(
            image,
            np.array([m for m, _ in gt]).reshape(-1, *gt_all.shape[1:]),
            pred.reshape(-1, *gt_all.shape[1:]),
            [(vocab.names[c], color[c]) for c in shown],
            truth_colors=[color[c] for _, c in gt],
            predicted_colors=[color[c] for c in pred_classes],
            long_side=LONG_SIDE,
        )
        tiles.append(viz.captioned(tile, f"image {s.image_id}: {len(pred)} predicted segment(s)"))
    return _save_grid(tiles, out / "panoptic.png")


def grounding_pictures(
    predictor, samples: Sequence[Sample], out: Path, *, per_image: int = 3
) -> Path:
    """Up to ``per_image`` refs of each image (first sentence each) grounded together."""
    tiles = []
    for s in samples:
        ids = {g.id for g in s.panoptic.segments}
        refs = [r for r in s.refs if r.sentences and r.ann_id in ids][:per_image]
        if refs:
            image, phrases = read_image_tensor(s.image_path), [r.sentences[0].sent for r in refs]
            predictor.set_image(image)
            pred = predictor.ground(phrases).masks.numpy()
            gt = _segment_masks(s, [r.ann_id for r in refs])
            tiles.append(_entity_tile(image, gt, pred, phrases))
    return _save_grid(tiles, out / "grounding.png")


def interactive_pictures(
    predictor, samples: Sequence[Sample], vocab: Vocabulary, out: Path
) -> Path:
    """One click at the centre of each image's first thing."""
    names = {c: vocab.names[i] for c, i in vocab.index.items()}
    tiles = []
    for s in samples:
        things = [g for g in s.panoptic.segments if g.isthing]
        if not things:
            continue
        gt = _segment_masks(s, [things[0].id])
        click = next_click(gt[0])
        prompt = VisualPrompt(rasterize(gt.shape[1:], points=[(click.x, click.y)], radius=3))
        image = read_image_tensor(s.image_path)
        predictor.set_image(image)
        pred = predictor.click([prompt]).masks.numpy()
        text = f"{names.get(things[0].category_id, 'object')}, 1 click"
        tiles.append(_entity_tile(image, gt, pred, [text], clicks=[(click.y, click.x, True)]))
    return _save_grid(tiles, out / "interactive.png")


def _interleave_query(
    sample: Sample, by_id: dict[int, Sample], segments: SegmentMasks
) -> tuple[VisualQuery, Image.Image, list[tuple[EntityPhrase, bool]]] | None:
    """The first entity caption of ``sample`` with a usable reference, that reference visual.

    Returns the query, the crop of the referenced object, and per entity its phrase and
    whether it is the visual one; None when no caption has a usable reference.
    """
    for cap in sample.entities:
        found = visual_query(cap, by_id, segments)
        if found is not None:
            ys, xs = np.nonzero(found.mask)
            crop = Image.fromarray(viz.to_hwc(found.image)).crop(
                (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            )
            spans = [(p, k == found.entity) for k, p in enumerate(cap.spans)]
            return found, crop, spans
    return None


def interleave_segmentation_pictures(
    predictor, samples: Sequence[Sample], gallery: Sequence[Sample], out: Path
) -> Path:
    """One interleaved caption per image, one of its entities a visual reference."""
    by_id, segments = {s.image_id: s for s in gallery}, SegmentMasks()
    tiles = []
    for s in samples:
        found = _interleave_query(s, by_id, segments)
        if found is None:
            continue
        query, spans = found[0].text, found[2]
        image = read_image_tensor(s.image_path)
        predictor.set_image(image)
        pred = predictor.interleave(query).masks.numpy()
        gt = _segment_masks(s, [p.segment_id for p, _ in spans])
        texts = [f"{p.phrase}{' [visual reference]' if v else ''}" for p, v in spans]
        tiles.append(_entity_tile(image, gt, pred, texts, caption=query.text))
    return _save_grid(tiles, out / "interleave_segmentation.png")


def interleave_pictures(
    predictor,
    samples: Sequence[Sample],
    gallery: Sequence[Sample],
    out: Path,
    *,
    rows: int = 4,
) -> Path:
    """Interleaved queries of ``samples`` against every image of ``gallery``: top-5 rows."""
    by_id, segments = {s.image_id: s for s in gallery}, SegmentMasks()
    embeddings = []
    for s in gallery:
        predictor.set_image(read_image_tensor(s.image_path))
        embeddings.append(predictor.embed_image())
    bank = F.normalize(torch.stack(embeddings), dim=-1)
    thumbs = {}

    def thumb(sample: Sample) -> Image.Image:
        if sample.image_id not in thumbs:
            rgb = viz.to_hwc(read_image_tensor(sample.image_path))
            big = viz.enlarge_image(rgb, viz.scale_for(*rgb.shape[:2], THUMB_SIDE))
            thumbs[sample.image_id] = Image.fromarray(big)
        return thumbs[sample.image_id]

    lines = []
    for s in samples:
        found = _interleave_query(s, by_id, segments)
        if found is None:
            continue
        query, crop, spans = found[0].text, found[1], found[2]
        q = F.normalize(predictor.embed_query(query), dim=-1)
        order = (bank @ q).argsort(descending=True).tolist()
        rank = 1 + [gallery[j].image_id for j in order].index(s.image_id)
        side = thumb(s).height
        pics = [
            viz.titled(viz.fit(crop, side), next(p.phrase for p, v in spans if v)),
            viz.titled(viz.frame(thumb(s), (0, 200, 0)), f"target: rank {rank}"),
        ]
        for n, j in enumerate(order[:5], 1):
            pic = thumb(gallery[j])
            hit = gallery[j].image_id == s.image_id
            pics.append(viz.titled(viz.frame(pic, (0, 200, 0)) if hit else pic, f"top {n}"))
        row = viz.grid(pics, len(pics), pad=4)
        lines.append(viz.captioned(row, query.text))
        if len(lines) == rows:
            break
    return viz.save(viz.stack(lines, pad=12), out / "interleave_retrieval.png")


def curves(run_dir: Path, out: Path) -> Path:
    """The total loss and each loss term of ``run_dir/train.jsonl`` against the step."""
    records = [
        json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines() if line
    ]
    keys = [
        "class_ce",
        "mask_dice",
        "grounding_ce",
        "interactive_ce",
        "interleave_ce",
        "retrieval",
        "retrieval_tokens",
        "interleave_itc",
    ]
    series = {k: [(r["step"], r[k]) for r in records if k in r] for k in keys}
    total = {"total": [(r["step"], r["total"]) for r in records]}
    pic = viz.grid(
        [viz.line_plot(total, title="total loss"), viz.line_plot(series, title="loss terms")], 2
    )
    return viz.save(pic, out / "training_curves.png")
