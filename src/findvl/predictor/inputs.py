"""What a user hands the predictor, normalised: images, SAM-style clicks / boxes, logits."""

from __future__ import annotations

import numpy as np
import torch

from findvl.images import to_rgb_array
from findvl.model.requests import VisualPrompt
from findvl.model.sampler import rasterize


def as_image_tensor(image) -> torch.Tensor:
    """Any supported image -> ``[3,H,W]`` tensor on 0..255.

    Accepts a PIL image (EXIF orientation applied), an ``HxW`` / ``HxWx3`` / ``HxWx4`` array
    (uint8, uint16 scaled by 1/257, float on 0..1 or 0..255, bool; alpha dropped) or a
    tensor ``[3,H,W]`` / ``[1,H,W]`` / ``[4,H,W]`` / ``[H,W]`` (uint8 as is; other types scaled
    like arrays). Bad input raises ``ValueError`` naming ``image``.
    """
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.dim() == 3 and t.shape[0] == 3 and t.dtype == torch.uint8:
            return t
        if t.dim() == 3 and t.shape[0] in (1, 4):
            t = t[:1] if t.shape[0] == 1 else t[:3]
        if t.dim() == 3 and t.shape[0] in (1, 3):
            array = t.permute(1, 2, 0).cpu().numpy()
        elif t.dim() == 2:
            array = t.cpu().numpy()
        else:
            raise ValueError(
                f"image: expected a [3,H,W], [1,H,W], [4,H,W] or [H,W] tensor, got {tuple(t.shape)}"
            )
        image = array
    rgb = to_rgb_array(image, where="image")
    if not rgb.flags.writeable or rgb is image:
        rgb = rgb.copy()  # never share (or alias read-only) memory with the caller's array
    return torch.from_numpy(rgb).permute(2, 0, 1)  # HxWx3 -> 3xHxW


def prompt_from_inputs(
    size: tuple[int, int],
    point_coords=None,
    point_labels=None,
    box=None,
    *,
    scribble=None,
    radius: int = 3,
) -> VisualPrompt:
    """SAM-style clicks / box / scribble in pixels -> one rasterised :class:`VisualPrompt`."""
    points = np.zeros((0, 2)) if point_coords is None else np.asarray(point_coords, float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"point_coords: expected an [N,2] array of (x, y), got {points.shape}")
    if point_labels is None:
        labels = np.ones(len(points), int)
    else:
        labels = np.asarray(point_labels).reshape(-1)
    if len(labels) != len(points):
        raise ValueError(f"point_labels: {len(labels)} labels for {len(points)} points")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("point_labels: expected 1 (positive) or 0 (negative) per point")
    pos = [tuple(p) for p, lab in zip(points.tolist(), labels) if lab == 1]
    neg = [tuple(p) for p, lab in zip(points.tolist(), labels) if lab == 0]
    positive = rasterize(size, points=pos, radius=radius, field="point_coords")
    if box is not None:
        b = np.asarray(box, float).reshape(-1)
        if b.shape != (4,):
            raise ValueError(f"box: expected (x0, y0, x1, y1), got {np.asarray(box).shape}")
        positive |= rasterize(size, box=tuple(b.tolist()), field="box")
    if scribble is not None:
        stroke = torch.as_tensor(np.asarray(scribble)).bool()
        if tuple(stroke.shape) != tuple(size):
            raise ValueError(f"scribble: shape {tuple(stroke.shape)} is not the image size {size}")
        positive |= stroke
    if not bool(positive.any()):
        raise ValueError("point_coords/box: give at least one positive click, a box or a scribble")
    negative = rasterize(size, points=neg, radius=radius, field="point_coords") if neg else None
    return VisualPrompt(positive, negative)


def previous_logits(mask_input, size: tuple[int, int]) -> list[torch.Tensor]:
    prev = torch.as_tensor(np.asarray(mask_input, dtype=np.float32))
    if prev.dim() == 3 and prev.shape[0] == 1:
        prev = prev[0]
    if prev.dim() != 2:
        raise ValueError(f"mask_input: expected [H,W] or [1,H,W] logits, got {tuple(prev.shape)}")
    if not bool(torch.isfinite(prev).all()):
        raise ValueError("mask_input: logits must be finite")
    if tuple(prev.shape) != tuple(size):
        prev = torch.nn.functional.interpolate(
            prev[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0]
    return [prev]
