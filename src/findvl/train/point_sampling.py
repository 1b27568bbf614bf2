"""Point sampling of mask logits (PointRend), used by the matcher and the mask losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(input: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``input`` at normalised point coordinates.

    Args:
        input: ``[N,C,H,W]`` feature maps or mask logits.
        coords: ``[N,P,2]`` points as ``(x, y)`` in ``[0, 1]`` (0 = left/top edge of the
            first pixel, 1 = right/bottom edge of the last pixel).

    Returns:
        ``[N,C,P]`` sampled values (``grid_sample`` with ``align_corners=False``, zero padding).
    """
    if input.dim() != 4 or coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(
            f"point_sample expects input [N,C,H,W] and coords [N,P,2], got "
            f"{tuple(input.shape)} and {tuple(coords.shape)}"
        )
    grid = 2.0 * coords.unsqueeze(2) - 1.0  # NxPx2 -> NxPx1x2 in [-1, 1]
    out = F.grid_sample(input, grid.to(input.dtype), mode="bilinear", align_corners=False)
    return out.squeeze(3)  # NxCxPx1 -> NxCxP


def random_point_coords(
    num_masks: int,
    num_points: int,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform random points ``[num_masks, num_points, 2]`` in ``[0, 1)``.

    The numbers are drawn on the generator's device (a CPU generator also serves CUDA
    tensors) and moved to ``device``; on the CPU, one draw of ``n`` masks equals ``n``
    consecutive draws of one mask each.
    """
    source = generator.device if generator is not None else device
    return torch.rand(num_masks, num_points, 2, device=source, generator=generator).to(device)


def draw_candidate_points(
    num_masks: int,
    num_points: int,
    *,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draws of :func:`uncertain_point_coords`, made in its order.

    Drawing first and choosing later (:func:`select_uncertain_points`) lets a caller draw for
    several groups of masks in turn and then choose the points of all of them at once.

    Returns:
        ``(candidates [M,K,2], fresh [M,P-U,2])`` with ``K = int(num_points *
        oversample_ratio)`` and ``U = int(importance_sample_ratio * num_points)``.
    """
    if oversample_ratio < 1.0:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(
            f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}"
        )
    num_candidates = int(num_points * oversample_ratio)
    num_random = num_points - int(importance_sample_ratio * num_points)
    kw = {"device": device, "generator": generator}
    candidates = random_point_coords(num_masks, num_candidates, **kw)
    if num_random > 0:
        fresh = random_point_coords(num_masks, num_random, **kw)
    else:
        fresh = candidates.new_zeros(num_masks, 0, 2)
    return candidates, fresh


@torch.no_grad()
def select_uncertain_points(
    logits: torch.Tensor, candidates: torch.Tensor, fresh: torch.Tensor, num_uncertain: int
) -> torch.Tensor:
    """Keep the ``num_uncertain`` candidates with the smallest ``|logit|`` and append ``fresh``.

    Args:
        logits: ``[M,1,H,W]`` class-agnostic mask logits.
        candidates: ``[M,K,2]`` candidate points (``K >= num_uncertain``).
        fresh: ``[M,R,2]`` uniform points appended as they are.
        num_uncertain: points chosen by uncertainty per mask.

    Returns:
        ``[M,num_uncertain+R,2]`` point coordinates.
    """
    uncertainty = -point_sample(logits.detach().float(), candidates)[:, 0].abs()  # MxK
    top = uncertainty.topk(num_uncertain, dim=1, sorted=False).indices  # MxU, any order
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    return torch.cat([chosen, fresh.to(chosen)], dim=1) if fresh.shape[1] else chosen


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    *,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PointRend importance sampling: most points where the mask logit is near zero.

    Draws ``int(num_points * oversample_ratio)`` uniform candidates, keeps the
    ``int(importance_sample_ratio * num_points)`` most uncertain ones (uncertainty
    ``-|logit|``) and fills the rest with fresh uniform points. Runs without gradient.

    Args:
        logits: ``[N,1,H,W]`` class-agnostic mask logits.
        num_points: points per mask ``P``.
        oversample_ratio: candidates per kept point (>= 1).
        importance_sample_ratio: fraction of ``P`` chosen by uncertainty, in ``[0, 1]``.
        generator: random generator for reproducible sampling.

    Returns:
        ``[N,P,2]`` point coordinates ``(x, y)`` in ``[0, 1]``.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be [N,1,H,W], got {tuple(logits.shape)}")
    candidates, fresh = draw_candidate_points(
        logits.shape[0],
        num_points,
        oversample_ratio=oversample_ratio,
        importance_sample_ratio=importance_sample_ratio,
        device=logits.device,
        generator=generator,
    )
    return select_uncertain_points(
        logits, candidates, fresh, int(importance_sample_ratio * num_points)
    )
