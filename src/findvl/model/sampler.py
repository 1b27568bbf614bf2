"""Embedding sampler: visual prompts -> normalised points -> spatial tokens per feature level.

Prompts are rasterised masks in each image's own pixel grid. Points are normalised per image,
padding-aware, in one of two conventions (:data:`CONVENTIONS`):

* ``"center"`` (findvl's own presets): a pixel ``(y, x)`` of an image resized by ``s`` and padded
  to ``(H, W)`` lands at its centre ``((x + 0.5) s / W, (y + 0.5) s / H)`` of the padded canvas
  and features are sampled with ``align_corners=False``: the point sits on the feature cell
  that covers that pixel.
* ``"official"`` (released FIND weights): the pixel lands at ``(x s / W, y s / H)`` and features
  are sampled with ``align_corners=True`` (``0`` and ``1`` are the centres of the first and last
  feature cells), as the weights were trained.

Either way the same prompt samples the same features whatever the padding. With
``per_level=True`` (released weights) each feature level draws its own points from the same
regions; otherwise one draw serves every level.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from findvl.config import PointConvention
from findvl.model.requests import VisualPrompt

#: Point conventions: ``"center"`` (pixel centres, align_corners=False) or ``"official"``.
CONVENTIONS = typing.get_args(PointConvention)


@dataclass
class PromptPoints:
    """Points drawn from the prompts of a batch.

    Attributes:
        coords: ``[B,P,2]`` normalised ``(x, y)`` in ``[0,1]`` of the padded canvas.
        valid: ``[B,P]`` bool, False at padding.
        ids: ``[B,P]`` int64, index of the prompt (or entity) each point belongs to.
        negative: ``[B,P]`` bool, True for points of a negative region.
    """

    coords: torch.Tensor
    valid: torch.Tensor
    ids: torch.Tensor
    negative: torch.Tensor


def rasterize(
    size: tuple[int, int],
    *,
    points: list[tuple[float, float]] | None = None,
    box: tuple[float, float, float, float] | None = None,
    radius: int = 3,
    field: str = "prompt",
) -> torch.Tensor:
    """Rasterise clicks ``(x, y)`` (disks of ``radius``) or a box ``(x0,y0,x1,y1)`` to ``[h,w]``."""
    h, w = size
    out = torch.zeros(h, w, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i, (x, y) in enumerate(points or []):
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"{field}.points[{i}]: ({x}, {y}) is outside the {w}x{h} image")
        out |= (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    if box is not None:
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"{field}.box: {box} is not a non-empty box inside the {w}x{h} image")
        out[int(y0) : int(-(-y1 // 1)), int(x0) : int(-(-x1 // 1))] = True
    return out


def _check_region(region: torch.Tensor, size: tuple[int, int], field: str) -> None:
    if region.dim() != 2 or tuple(region.shape) != tuple(size):
        raise ValueError(
            f"{field}: shape {tuple(region.shape)} does not match the image size {tuple(size)}"
        )


def _draw(pixels: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    if len(pixels) <= k:
        return pixels
    order = torch.randperm(len(pixels), generator=generator)[:k]
    return pixels[order.sort().values]


def prompt_points(
    prompts: list[list[VisualPrompt]],
    *,
    image_sizes: list[tuple[int, int]],
    input_sizes: list[tuple[int, int]],
    canvas: tuple[int, int],
    max_points: int,
    generator: torch.Generator | None = None,
    field: str = "prompts",
    convention: str = "center",
) -> PromptPoints:
    """Draw up to ``max_points`` points per image, the same number from every region.

    Args:
        prompts: per image, its prompts (ids are positions in that list).
        image_sizes: per image ``(h, w)`` of the prompt masks (the original image).
        input_sizes: per image ``(h, w)`` after the encoder's resize (valid region).
        canvas: padded ``(H, W)`` of the batch.
        max_points: budget per image, shared equally by its regions.
        generator: for the random choice of points (seed it for deterministic evaluation).
        convention: ``"center"`` or ``"official"`` (see the module docstring).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"point convention {convention!r}: expected one of {CONVENTIONS}")
    offset = 0.5 if convention == "center" else 0.0
    rows = []
    for b, image_prompts in enumerate(prompts):
        regions = []
        for j, prompt in enumerate(image_prompts):
            _check_region(prompt.positive, image_sizes[b], f"{field}[{b}][{j}].positive")
            if not bool(prompt.positive.any()):
                raise ValueError(f"{field}[{b}][{j}].positive: the prompt marks no pixel")
            regions.append((j, False, prompt.positive))
            if prompt.negative is not None and bool(prompt.negative.any()):
                _check_region(prompt.negative, image_sizes[b], f"{field}[{b}][{j}].negative")
                regions.append((j, True, prompt.negative))
        per_region = max(1, max_points // max(1, len(regions)))
        (h, w), (ih, iw) = image_sizes[b], input_sizes[b]
        pts = []
        for j, negative, region in regions:
            yx = _draw(region.nonzero().float(), per_region, generator)
            x = (yx[:, 1] + offset) * (iw / w) / canvas[1]
            y = (yx[:, 0] + offset) * (ih / h) / canvas[0]
            pts.append((torch.stack([x, y], -1), j, negative))
        rows.append(pts)
    length = max(1, max(sum(len(p[0]) for p in r) for r in rows) if rows else 1)
    coords = torch.zeros(len(rows), length, 2)
    valid = torch.zeros(len(rows), length, dtype=torch.bool)
    ids = torch.full((len(rows), length), -1, dtype=torch.long)
    negative = torch.zeros(len(rows), length, dtype=torch.bool)
    for b, pts in enumerate(rows):
        n = 0
        for xy, j, neg in pts:
            coords[b, n : n + len(xy)] = xy
            valid[b, n : n + len(xy)] = True
            ids[b, n : n + len(xy)] = j
            negative[b, n : n + len(xy)] = neg
            n += len(xy)
    return PromptPoints(coords, valid, ids, negative)


def level_points(
    prompts: list[list[VisualPrompt]],
    *,
    num_levels: int,
    per_level: bool,
    **kwargs,
) -> list[PromptPoints]:
    """Points for each of ``num_levels`` feature levels: one draw shared by all levels, or
    (``per_level``) an independent draw per level, in level order from the same generator.

    Every level keeps the same number of points per region, so padding and ids agree across
    levels; only which pixels were drawn differs. ``kwargs`` go to :func:`prompt_points`.
    """
    if not per_level:
        return [prompt_points(prompts, **kwargs)] * num_levels
    return [prompt_points(prompts, **kwargs) for _ in range(num_levels)]


def sample_tokens(
    feature: torch.Tensor, coords: torch.Tensor, convention: str = "center"
) -> torch.Tensor:
    """Bilinear samples of ``feature [B,C,h,w]`` at ``coords [B,P,2]`` -> ``[B,P,C]``.

    ``convention="official"`` samples with ``align_corners=True``, ``"center"`` without.
    """
    grid = (coords * 2 - 1)[:, None]  # BxPx2 -> Bx1xPx2 in [-1,1]
    out = F.grid_sample(feature, grid.to(feature.dtype), align_corners=convention == "official")
    return out[:, :, 0].transpose(1, 2)  # BxCx1xP -> BxPxC
