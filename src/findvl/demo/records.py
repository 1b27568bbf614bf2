"""What every demo endpoint returns: an overlay picture and one JSON record per mask."""

from __future__ import annotations

import numpy as np
from PIL import Image

from findvl import viz
from findvl.metrics.io import rle_to_json


def bbox_xywh(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, width, height]`` of a ``[H,W]`` bool mask (zeros when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


def mask_records(
    masks: np.ndarray,
    scores: list[float] | np.ndarray,
    labels: list[str],
    category_ids: list[int] | None = None,
) -> list[dict]:
    """``[M,H,W]`` bool masks -> ``[{label, score, bbox, area, segmentation}]`` (COCO RLE).

    ``category_ids``: per mask, the class index (generic segmentation) to add as
    ``category_id``.
    """
    records = []
    for k, mask in enumerate(np.asarray(masks, bool)):
        record = {
            "label": labels[k],
            "score": round(float(scores[k]), 6),
            "bbox": bbox_xywh(mask),
            "area": int(mask.sum()),
            "segmentation": rle_to_json(mask),
        }
        if category_ids is not None:
            record["category_id"] = int(category_ids[k])
        records.append(record)
    return records


def draw(
    image: np.ndarray,
    masks: np.ndarray,
    labels: list[str],
    *,
    clicks: list[tuple[int, int, bool]] | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> Image.Image:
    """The image with one colour per mask, a legend under it, clicks and a box on top.

    Small images are enlarged (nearest) so the long side is at least 384 pixels.
    """
    factor = viz.scale_for(*image.shape[:2], 384)
    big = viz.enlarge_image(image, factor)
    big_masks = viz.enlarge(np.asarray(masks, bool).reshape(-1, *image.shape[:2]), factor)
    colors = viz.palette(len(labels))
    picture = viz.overlay(big, big_masks, colors=colors, alpha=0.55, outline=max(1, factor // 2))
    if box is not None:
        from PIL import ImageDraw

        x0, y0, x1, y1 = (v * factor for v in box)
        ImageDraw.Draw(picture).rectangle((x0, y0, x1, y1), outline=(255, 255, 0), width=2)
    if clicks:
        dots = [(y * factor + factor // 2, x * factor + factor // 2, p) for y, x, p in clicks]
        picture = viz.draw_clicks(picture, dots, radius=max(4, factor))
    if not labels:
        return viz.captioned(picture, "no mask above the threshold")
    return viz.stack([picture, viz.legend(list(zip(labels, colors)), picture.width)])
