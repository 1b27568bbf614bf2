"""Hungarian matching between predicted masks and targets.

The cost of assigning prediction ``q`` to target ``t`` is
``C = w_mask * BCE(q, t) + w_class * class(q, t) + w_dice * dice(q, t)``, with the mask terms
computed on ``num_points`` uniform random points shared by all masks of the image. The class term
is given by the caller as a ``[Q,T]`` matrix; :func:`panoptic_class_cost` and
:func:`proposal_class_cost` build the two variants used by FIND.

:meth:`HungarianMatcher.match` solves one image; :meth:`HungarianMatcher.match_many` solves
many (images, or images × layers) with one batched cost computation and one assignment per
problem, drawing the same random points as one :meth:`~HungarianMatcher.match` per problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from findvl.train.mask_logits import MaskLogits
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


def panoptic_class_costs(logits: torch.Tensor, gt_classes: list[torch.Tensor]) -> torch.Tensor:
    """:func:`panoptic_class_cost` of ``n`` problems at once, padded to the most targets.

    Args:
        logits: ``[n,Q,K+1]`` class logits.
        gt_classes: ``n`` int64 tensors ``[T_i]`` of class ids in ``[0, K)``.

    Returns:
        ``[n,Q,T]`` cost with ``T = max T_i``; columns ``>= T_i`` of problem ``i`` are 0.
    """
    n, q, k = logits.shape
    rows, cols = _pair_index([len(c) for c in gt_classes])
    width = int(cols.max()) + 1 if len(cols) else 0
    flat = torch.cat([c.reshape(-1).cpu() for c in gt_classes]) if len(cols) else None
    cls = torch.zeros(n, width, dtype=torch.int64)
    valid = torch.zeros(n, width, dtype=torch.bool)
    if flat is not None:
        if flat.min() < 0 or flat.max() >= k:
            raise ValueError(
                f"gt_classes must lie in [0, {k}), got range [{int(flat.min())}, {int(flat.max())}]"
            )
        cls[rows, cols], valid[rows, cols] = flat, True
    cls, valid = cls.to(logits.device), valid.to(logits.device)
    prob = logits.float().softmax(dim=-1)
    cost = -prob.gather(2, cls[:, None, :].expand(n, q, width))  # nxQxT
    return cost.masked_fill(~valid[:, None, :], 0.0)


def _pair_index(counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(problem, position)`` of every target when problem ``i`` has ``counts[i]`` targets."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return rows, np.arange(int(counts.sum())) - np.repeat(starts, counts)


def proposal_class_cost(logits: torch.Tensor) -> torch.Tensor:
    """Class cost for grounding / interactive / interleave: softmax over proposals.

    Args:
        logits: ``[...,Q,T]`` similarity logits between each proposal and each target query.

    Returns:
        ``[...,Q,T]`` cost ``-softmax(logits, dim=-2)``.
    """
    return -logits.float().softmax(dim=-2)


def pairwise_bce_cost(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE over points for every (prediction, target) pair.

    Args:
        point_logits: ``[...,Q,P]`` predicted mask logits at the points.
        point_labels: ``[...,T,P]`` target values in ``[0, 1]`` at the same points.

    Returns:
        ``[...,Q,T]`` cost.
    """
    # BCE(x, y) = -log_sigmoid(x) + (1 - y) * x, so the sum over points of every pair is
    # sum(-log_sigmoid(x)) + x . (1 - y): one pass over the logits and one matmul.
    num_points = point_logits.shape[-1]
    pos = -F.logsigmoid(point_logits).sum(-1)  # ...xQ, the cost of all-positive labels
    cost = pos[..., :, None] + point_logits @ (1.0 - point_labels).transpose(-1, -2)
    return cost / num_points


def pairwise_dice_cost(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Soft dice ``1 - (2I+1)/(P+G+1)`` for every (prediction, target) pair.

    Args:
        point_logits: ``[...,Q,P]`` predicted mask logits at the points.
        point_labels: ``[...,T,P]`` target values in ``[0, 1]``.

    Returns:
        ``[...,Q,T]`` cost.
    """
    prob = point_logits.sigmoid()
    intersection = 2.0 * (prob @ point_labels.transpose(-1, -2))
    total = prob.sum(-1)[..., :, None] + point_labels.sum(-1)[..., None, :]
    return 1.0 - (intersection + 1.0) / (total + 1.0)


#: Elements of one ``[problems,Q,P]`` block of :meth:`HungarianMatcher.match_many`: more
#: problems per block save calls, but blocks much larger than the CPU caches run slower per
#: element than one problem at a time.
_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Matching:
    """One image's assignment: prediction ``pred_idx[i]`` is matched to target ``tgt_idx[i]``.

    Both are ``[min(Q,T)]`` int64 tensors, sorted by ``pred_idx``.
    """

    pred_idx: torch.Tensor
    tgt_idx: torch.Tensor


@dataclass(frozen=True)
class BatchMatching:
    """The assignments of ``n`` problems as flat int64 arrays (on the CPU), one entry per pair.

    Pair ``j`` matches prediction ``pred_idx[j]`` of problem ``problem[j]`` to its target
    ``tgt_idx[j]``; pairs are sorted by problem, then by prediction.
    """

    problem: np.ndarray
    pred_idx: np.ndarray
    tgt_idx: np.ndarray

    def of(self, i: int, device: torch.device | str = "cpu") -> Matching:
        """Problem ``i``'s :class:`Matching`."""
        keep = self.problem == i
        return Matching(
            pred_idx=torch.as_tensor(self.pred_idx[keep], device=device),
            tgt_idx=torch.as_tensor(self.tgt_idx[keep], device=device),
        )


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

    @torch.no_grad()
    def match_many(
        self,
        pred_masks: torch.Tensor | MaskLogits,
        gt_masks: torch.Tensor,
        gt_counts: Sequence[int],
        class_cost: torch.Tensor | None = None,
        *,
        coords: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> BatchMatching:
        """Match ``n`` problems at once (e.g. the images of a batch, or images × layers).

        Equals one :meth:`match` per problem, in order, with the same generator: the points
        are drawn in one call whose numbers are those of the per-problem calls (problems
        without targets draw none); only the float summation order of the costs differs.

        Args:
            pred_masks: ``[n,Q,H,W]`` mask logits, dense or as :class:`MaskLogits`.
            gt_masks: ``[G,h,w]`` targets of all problems, concatenated in problem order.
            gt_counts: ``n`` target counts (summing to ``G``; 0 allowed).
            class_cost: ``[n,Q,T]`` class term padded to ``T >= max(gt_counts)`` (columns past
                a problem's count are ignored), or ``None`` for masks only.
            coords: ``[a,P,2]`` points for the ``a`` problems with targets, in order; drawn
                with ``generator`` when ``None``.
            generator: random generator for the sampled points.
        """
        if isinstance(pred_masks, torch.Tensor):
            if pred_masks.dim() != 4:
                raise ValueError(f"pred_masks must be [n,Q,H,W], got {tuple(pred_masks.shape)}")
            pred_masks = MaskLogits(pred_masks)
        n, q = pred_masks.num_problems, pred_masks.num_queries
        counts = np.asarray(gt_counts, dtype=np.int64)
        if gt_masks.dim() != 3 or len(counts) != n:
            raise ValueError(
                f"gt_masks must be [G,h,w] and gt_counts {n} long, got "
                f"{tuple(gt_masks.shape)} and {len(counts)} counts"
            )
        if int(counts.sum()) != gt_masks.shape[0]:
            raise ValueError(f"gt_counts sum to {counts.sum()}, gt_masks has {gt_masks.shape[0]}")
        active = np.flatnonzero(counts > 0) if q > 0 else np.zeros(0, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        if len(active) == 0:
            return BatchMatching(problem=empty, pred_idx=empty.copy(), tgt_idx=empty.copy())
        if coords is None:
            coords = random_point_coords(
                len(active), self.num_points, device=pred_masks.device, generator=generator
            )
        index = torch.as_tensor(active, device=pred_masks.device)
        if class_cost is not None:
            if class_cost.shape[:2] != (n, q) or class_cost.shape[2] < counts.max():
                raise ValueError(
                    f"class_cost must be [{n},{q},>={counts.max()}], got {tuple(class_cost.shape)}"
                )
            class_cost = class_cost[index, :, : int(counts.max())]
        chunk = max(1, _CHUNK_ELEMENTS // (q * coords.shape[1]))  # problems per cost block
        parts, first = [], 0
        for start in range(0, len(active), chunk):
            stop = min(start + chunk, len(active))
            sizes = counts[active[start:stop]]
            part = self._batched_cost(
                pred_masks.at_points(index[start:stop], coords[start:stop]),
                gt_masks[first : first + int(sizes.sum())],
                sizes,
                None if class_cost is None else class_cost[start:stop, :, : int(sizes.max())],
                coords[start:stop],
            )
            parts.append(F.pad(part, (0, int(counts.max()) - part.shape[-1])))
            first += int(sizes.sum())
        cost = torch.cat(parts).cpu().numpy()
        problem, pred, tgt = [], [], []
        for j, i in enumerate(active):
            rows, cols = linear_sum_assignment(cost[j, :, : counts[i]])
            problem.append(np.full(len(rows), i, dtype=np.int64))
            pred.append(rows.astype(np.int64))
            tgt.append(cols.astype(np.int64))
        return BatchMatching(
            problem=np.concatenate(problem),
            pred_idx=np.concatenate(pred),
            tgt_idx=np.concatenate(tgt),
        )

    def _batched_cost(
        self,
        pred_points: torch.Tensor,
        gt_masks: torch.Tensor,
        counts: np.ndarray,
        class_cost: torch.Tensor | None,
        coords: torch.Tensor,
    ) -> torch.Tensor:
        """``[a,Q,T]`` total cost of ``a`` problems that all have targets (``T = max count``),
        from their ``[a,Q,P]`` mask logits at ``coords [a,P,2]``."""
        a, width = pred_points.shape[0], int(counts.max())
        device = pred_points.device
        rows, cols = (torch.as_tensor(x, device=device) for x in _pair_index(counts))
        gt_points = point_sample(gt_masks[:, None].to(pred_points), coords[rows])[:, 0]  # GxP
        labels = pred_points.new_zeros(a, width, coords.shape[1])
        labels[rows, cols] = gt_points  # axTxP, zero past each problem's count
        terms = {
            "mask": self.cost_mask * pairwise_bce_cost(pred_points, labels),
            "dice": self.cost_dice * pairwise_dice_cost(pred_points, labels),
        }
        if class_cost is not None:
            terms["class"] = self.cost_class * class_cost.float()
        valid = torch.arange(width, device=device) < torch.as_tensor(counts, device=device).reshape(
            a, 1
        )  # axT
        total = sum(terms.values()).masked_fill(~valid[:, None, :], 0.0)
        if not torch.isfinite(total).all():
            for name, term in terms.items():
                if not torch.isfinite(term.masked_fill(~valid[:, None, :], 0.0)).all():
                    raise ValueError(f"matching cost term {name!r} contains NaN or inf")
        return total

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
