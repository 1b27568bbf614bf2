"""Hungarian matching between predicted masks and targets (one image at a time).

The cost of assigning prediction ``q`` to target ``t`` is
``C = w_mask * BCE(q, t) + w_class * class(q, t) + w_dice * dice(q, t)``, with the mask terms
computed on ``num_points`` uniform random points shared by all masks of the image. The class term
is given by the caller as a ``[Q,T]`` matrix; :func:`panoptic_class_cost` and
:func:`proposal_class_cost` build the two variants used by FIND.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from findvl.train.point_sampling import point_sample, random_point_coords


def panoptic_class_cost(logits: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
    """Class cost for closed-vocabulary matching: ``-softmax(logits)[:, gt_class]``.

    Args:
        logits: ``[Q,K+1]`` class logits of each prediction (last = no object).
        gt_classes: ``[T]`` int64 class ids in ``[0, K)``.

    Returns:
        ``[Q,T]`` cost.
    """
    if gt_classes.numel() and (gt_classes.min() < 0 or gt_classes.max() >= logits.shape[-1]):
        raise ValueError(
            f"gt_classes must lie in [0, {logits.shape[-1]}), got range "
            f"[{int(gt_classes.min())}, {int(gt_classes.max())}]"
        )
    return -logits.float().softmax(dim=-1)[:, gt_classes]


def proposal_class_cost(logits: torch.Tensor) -> torch.Tensor:
    """Class cost for grounding / interactive / interleave: softmax over proposals.

    Args:
        logits: ``[Q,T]`` similarity logits between each proposal and each target query.

    Returns:
        ``[Q,T]`` cost ``-softmax(logits, dim=0)``.
    """
    return -logits.float().softmax(dim=0)


def pairwise_bce_cost(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE over points for every (prediction, target) pair.

    Args:
        point_logits: ``[Q,P]`` predicted mask logits at the points.
        point_labels: ``[T,P]`` target values in ``[0, 1]`` at the same points.

    Returns:
        ``[Q,T]`` cost.
    """
    num_points = point_logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(
        point_logits, torch.ones_like(point_logits), reduction="none"
    )
    neg = F.binary_cross_entropy_with_logits(
        point_logits, torch.zeros_like(point_logits), reduction="none"
    )
    cost = pos @ point_labels.T + neg @ (1.0 - point_labels).T
    return cost / num_points


def pairwise_dice_cost(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Soft dice ``1 - (2I+1)/(P+G+1)`` for every (prediction, target) pair.

    Args:
        point_logits: ``[Q,P]`` predicted mask logits at the points.
        point_labels: ``[T,P]`` target values in ``[0, 1]``.

    Returns:
        ``[Q,T]`` cost.
    """
    prob = point_logits.sigmoid()
    intersection = 2.0 * (prob @ point_labels.T)
    total = prob.sum(-1)[:, None] + point_labels.sum(-1)[None, :]
    return 1.0 - (intersection + 1.0) / (total + 1.0)


@dataclass(frozen=True)
class Matching:
    """One image's assignment: prediction ``pred_idx[i]`` is matched to target ``tgt_idx[i]``.

    Both are ``[min(Q,T)]`` int64 tensors, sorted by ``pred_idx``.
    """

    pred_idx: torch.Tensor
    tgt_idx: torch.Tensor


class HungarianMatcher:
    """Minimum-cost one-to-one assignment of predictions to targets.

    Args:
        cost_mask: weight of the point-sampled mask BCE.
        cost_class: weight of the caller's class cost.
        cost_dice: weight of the point-sampled dice.
        num_points: uniform random points shared by all masks of an image.
    """

    def __init__(
        self,
        *,
        cost_mask: float = 5.0,
        cost_class: float = 2.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
    ) -> None:
        if num_points <= 0:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.cost_mask = cost_mask
        self.cost_class = cost_class
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self,
        pred_masks: torch.Tensor,
        gt_masks: torch.Tensor,
        class_cost: torch.Tensor | None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Total cost ``[Q,T]`` (float32, on the predictions' device).

        Args:
            pred_masks: ``[Q,H,W]`` mask logits.
            gt_masks: ``[T,h,w]`` binary (or soft) target masks; any resolution.
            class_cost: ``[Q,T]`` class term, or ``None`` for masks only.
            generator: random generator for the sampled points.
        """
        q, t = pred_masks.shape[0], gt_masks.shape[0]
        coords = random_point_coords(
            1, self.num_points, device=pred_masks.device, generator=generator
        )
        pred_points = point_sample(pred_masks[None].float(), coords)[0]  # 1xQxP -> QxP
        gt_points = point_sample(gt_masks[None].to(pred_points), coords)[0]  # 1xTxP -> TxP
        terms = {
            "mask": self.cost_mask * pairwise_bce_cost(pred_points, gt_points),
            "dice": self.cost_dice * pairwise_dice_cost(pred_points, gt_points),
        }
        if class_cost is not None:
            if tuple(class_cost.shape) != (q, t):
                raise ValueError(f"class_cost must be [{q},{t}], got {tuple(class_cost.shape)}")
            terms["class"] = self.cost_class * class_cost.float()
        for name, term in terms.items():
            if not torch.isfinite(term).all():
                raise ValueError(f"matching cost term {name!r} contains NaN or inf")
        return sum(terms.values())

    @torch.no_grad()
    def match(
        self,
        pred_masks: torch.Tensor,
        gt_masks: torch.Tensor,
        class_cost: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Matching:
        """Match one image's predictions to its targets.

        Args:
            pred_masks: ``[Q,H,W]`` mask logits.
            gt_masks: ``[T,h,w]`` target masks (``T`` may be 0).
            class_cost: ``[Q,T]`` class term (e.g. :func:`panoptic_class_cost`) or ``None``.
            generator: random generator for the sampled points.

        Returns:
            The :class:`Matching` (on the predictions' device), empty when ``T == 0``.
        """
        if pred_masks.dim() != 3 or gt_masks.dim() != 3:
            raise ValueError(
                f"pred_masks must be [Q,H,W] and gt_masks [T,h,w], got "
                f"{tuple(pred_masks.shape)} and {tuple(gt_masks.shape)}"
            )
        device = pred_masks.device
        if gt_masks.shape[0] == 0 or pred_masks.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            return Matching(pred_idx=empty, tgt_idx=empty.clone())
        cost = self.cost_matrix(pred_masks, gt_masks, class_cost, generator=generator)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        return Matching(
            pred_idx=torch.as_tensor(rows, dtype=torch.int64, device=device),
            tgt_idx=torch.as_tensor(cols, dtype=torch.int64, device=device),
        )

    def match_batch(
        self,
        pred_masks: list[torch.Tensor],
        gt_masks: list[torch.Tensor],
        class_costs: list[torch.Tensor | None],
        *,
        generator: torch.Generator | None = None,
    ) -> list[Matching]:
        """:meth:`match` for each image of a batch (lists of equal length)."""
        if not len(pred_masks) == len(gt_masks) == len(class_costs):
            raise ValueError(
                f"batch lists differ in length: {len(pred_masks)} predictions, "
                f"{len(gt_masks)} targets, {len(class_costs)} class costs"
            )
        return [
            self.match(p, g, c, generator=generator)
            for p, g, c in zip(pred_masks, gt_masks, class_costs)
        ]
