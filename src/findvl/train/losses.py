"""Loss functions of FIND training; each returns a scalar tensor.

Mask losses are evaluated on PointRend importance-sampled points and normalised by the number
of masks; class losses are cross-entropies either over ``K+1`` classes (panoptic) or over the
proposals (grounding, interactive, interleave); the contrastive terms of both retrieval tasks
are :mod:`findvl.train.contrastive`.

These are the per-image functions; :mod:`findvl.train.batched_losses` computes the same
deep-supervision terms for all layers and images of a task at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from findvl.train.point_sampling import point_sample, uncertain_point_coords

#: Loss-weight keys that earlier runs wrote, and their present names (one name per task: the
#: interactive-segmentation terms were called ``spatial_*``).
RENAMED_WEIGHTS = {
    "spatial_ce": "interactive_ce",
    "spatial_bce": "interactive_bce",
    "spatial_dice": "interactive_dice",
}


@dataclass(frozen=True)
class LossWeights:
    """Weights of every loss term and the point-sampling settings (official FIND defaults)."""

    class_ce: float = 2.0  # panoptic CE over K+1 classes
    mask_bce: float = 5.0
    mask_dice: float = 5.0
    no_object: float = 0.1  # CE weight of the no-object class
    interactive_ce: float = 0.4  # interactive: CE over proposals
    interactive_bce: float = 1.0
    interactive_dice: float = 1.0
    grounding_ce: float = 0.4
    grounding_bce: float = 1.0
    grounding_dice: float = 1.0
    grounding_text: float = 2.0  # CE multiplier for referring expressions
    grounding_class: float = 0.5  # CE multiplier for class-name phrases
    retrieval: float = 8.0  # image-caption InfoNCE
    retrieval_tokens: float = 4.0  # object proposals vs caption tokens (FIND: 0.5 x retrieval)
    interleave_itc: float = 8.0  # interleaved query-image InfoNCE
    # captions per image in the image-caption InfoNCE: 1 (FIND) is one random caption, more
    # adds up to that many of the image's captions as further true pairs (caption_infonce)
    retrieval_captions: int = 1
    # hard negatives per image in image -> text: its captions with two colours swapped
    # (findvl.data.hard_negatives); 0: none (FIND)
    retrieval_negatives: int = 0
    interleave_ce: float = 0.4
    interleave_bce: float = 1.0
    interleave_dice: float = 1.0
    # 0: a proposal-choice CE targets the Hungarian match only (FIND); t > 0: its target is
    # softmax(IoU / t) over every proposal's mask against the target (better masks, more mass)
    choice_iou_temperature: float = 0.0
    # weight of the proposal-choice CE of the initial predictions (layer 0, before any interface
    # layer): their scores come from the learned queries alone, the same for every image and
    # every prompt, so that CE can only teach which proposal slots are matched most often.
    # 1: kept with the others (FIND's deep supervision); 0: left out
    initial_choice: float = 1.0
    num_points: int = 12544  # importance-sampled points per mask for the mask losses
    match_points: int = 12544  # uniform points per image for the matching costs
    oversample_ratio: float = 3.0  # PointRend candidates per kept point
    importance_sample_ratio: float = 0.75  # fraction of points chosen by uncertainty

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LossWeights:
        """Build from a (possibly partial) mapping; unknown keys raise ``ValueError``.

        Keys of earlier runs (:data:`RENAMED_WEIGHTS`) are read under their present name."""
        values = {RENAMED_WEIGHTS.get(k, k): v for k, v in values.items()}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown loss weight key(s) {unknown}; known keys: {sorted(known)}")
        types = {f.name: f.type for f in fields(cls)}
        for key, value in values.items():
            allowed = (int,) if types[key] in (int, "int") else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed):
                kind = "an integer" if allowed == (int,) else "a number"
                raise ValueError(f"loss weight {key!r} must be {kind}, got {value!r}")
            if value < 0:
                raise ValueError(f"loss weight {key!r} must be >= 0, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, float | int]:
        """Plain ``{name: value}`` mapping (JSON-able)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sigmoid_bce_loss(
    point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: float
) -> torch.Tensor:
    """Sigmoid BCE averaged over points, summed over masks, divided by ``num_masks``.

    Args:
        point_logits: ``[M,P]`` mask logits at the sampled points.
        point_labels: ``[M,P]`` targets in ``[0, 1]`` at the same points.
        num_masks: normaliser (e.g. number of GT masks averaged over processes), > 0.
    """
    loss = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(
    point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: float
) -> torch.Tensor:
    """Soft dice ``1 - (2I+1)/(P+G+1)`` per mask, summed, divided by ``num_masks``.

    Args:
        point_logits: ``[M,P]`` mask logits at the sampled points.
        point_labels: ``[M,P]`` targets in ``[0, 1]``.
        num_masks: normaliser, > 0.
    """
    prob = point_logits.sigmoid()
    intersection = 2.0 * (prob * point_labels).sum(-1)
    total = prob.sum(-1) + point_labels.sum(-1)
    return (1.0 - (intersection + 1.0) / (total + 1.0)).sum() / num_masks


def mask_losses(
    pred_masks: torch.Tensor,
    gt_masks: torch.Tensor,
    num_masks: float,
    *,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-sampled BCE and dice between matched predicted and target masks.

    Points are chosen by importance sampling on the predictions; the targets are sampled with
    :func:`point_sample` at the same normalised coordinates, so the two may differ in size
    (e.g. predictions at stride 4, targets at full resolution).

    Args:
        pred_masks: ``[M,H,W]`` mask logits, in matched order.
        gt_masks: ``[M,h,w]`` float target masks, in the same order.
        num_masks: normaliser (> 0; clamp the GT count to at least 1 before passing it).
        num_points, oversample_ratio, importance_sample_ratio: point sampling settings.
        generator: random generator for reproducible sampling.

    Returns:
        ``(bce, dice)`` scalars; zeros connected to ``pred_masks`` when ``M == 0``.
    """
    if pred_masks.dim() != 3 or gt_masks.dim() != 3 or pred_masks.shape[0] != gt_masks.shape[0]:
        raise ValueError(
            f"pred_masks [M,H,W] and gt_masks [M,h,w] must hold the same M, got "
            f"{tuple(pred_masks.shape)} and {tuple(gt_masks.shape)}"
        )
    if num_masks <= 0:
        raise ValueError(f"num_masks must be positive, got {num_masks}")
    if pred_masks.shape[0] == 0:
        zero = pred_masks.sum() * 0.0
        return zero, zero.clone()
    coords = uncertain_point_coords(
        pred_masks[:, None],
        num_points,
        oversample_ratio=oversample_ratio,
        importance_sample_ratio=importance_sample_ratio,
        generator=generator,
    )
    return point_mask_losses(pred_masks, gt_masks, coords, num_masks)


def point_mask_losses(
    pred_masks: torch.Tensor, gt_masks: torch.Tensor, coords: torch.Tensor, num_masks: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and dice of :func:`mask_losses` at given points.

    Args:
        pred_masks: ``[M,H,W]`` mask logits, in matched order (``M > 0``).
        gt_masks: ``[M,h,w]`` float target masks, in the same order.
        coords: ``[M,P,2]`` points per mask.
        num_masks: normaliser, > 0.
    """
    logits = pred_masks[:, None].float()  # MxHxW -> Mx1xHxW (float32 also under autocast)
    point_labels = point_sample(gt_masks[:, None].to(logits.dtype), coords)[:, 0]  # MxP
    point_logits = point_sample(logits, coords)[:, 0]  # MxP
    return (
        sigmoid_bce_loss(point_logits, point_labels, num_masks),
        dice_loss(point_logits, point_labels, num_masks),
    )


def panoptic_class_loss(
    logits: torch.Tensor,
    target_classes: torch.Tensor,
    *,
    no_object_weight: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy over ``K+1`` classes; the last class (no object) is down-weighted.

    Args:
        logits: ``[B,Q,K+1]`` class logits.
        target_classes: ``[B,Q]`` int64 target class of each proposal: its matched GT class,
            or ``K`` (no object) for unmatched proposals; see :func:`panoptic_targets`.
        no_object_weight: class weight of the no-object class.

    Returns:
        Weighted mean CE (``F.cross_entropy`` with per-class weights).
    """
    num_classes = logits.shape[-1]
    weight = torch.ones(num_classes, dtype=logits.dtype, device=logits.device)
    weight[-1] = no_object_weight
    return F.cross_entropy(logits.transpose(1, 2), target_classes, weight=weight)


def panoptic_targets(
    num_queries: int,
    num_classes: int,
    gt_classes: torch.Tensor,
    pred_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
) -> torch.Tensor:
    """One image's ``[Q]`` CE targets: matched GT class, else ``num_classes`` (no object).

    Args:
        num_queries: number of proposals ``Q``.
        num_classes: number of real classes ``K`` (no object is ``K``).
        gt_classes: ``[T]`` int64 GT classes.
        pred_idx, tgt_idx: ``[M]`` matching of proposals to GT.
    """
    target = torch.full((num_queries,), num_classes, dtype=torch.int64, device=gt_classes.device)
    target[pred_idx] = gt_classes[tgt_idx]
    return target


def proposal_targets(
    num_proposals: int,
    num_targets: int,
    pred_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
    *,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Target distributions ``[T,Q]`` over proposals from a matching.

    Target ``t`` puts mass 1 on its matched proposal. With ``groups`` (``[T]`` int64, e.g. a
    hash of each phrase's text), the targets of a group share the mean of their one-hots, so
    identical phrases are not pushed toward different proposals. Unmatched targets get a zero
    row (ignored by :func:`proposal_ce_loss`).
    """
    device = pred_idx.device
    target = torch.zeros(num_targets, num_proposals, device=device)
    target[tgt_idx, pred_idx] = 1.0
    if groups is not None:
        if groups.shape != (num_targets,):
            raise ValueError(f"groups must be [{num_targets}], got {tuple(groups.shape)}")
        same = (groups[:, None] == groups[None, :]).float().to(device)  # TxT
        target = (same / same.sum(-1, keepdim=True)) @ target
    return target


def proposal_ce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy over proposals, one distribution per target query.

    Args:
        logits: ``[T,Q]`` similarity logits of each target query against each proposal.
        targets: ``[T,Q]`` target distributions (rows sum to 1; all-zero rows are ignored),
            e.g. from :func:`proposal_targets`.

    Returns:
        Mean CE over targets with a non-zero row; 0 (connected to ``logits``) when none.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must both be [T,Q], got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    keep = targets.sum(-1) > 0
    if not keep.any():
        return logits.sum() * 0.0
    log_prob = F.log_softmax(logits[keep].float(), dim=-1)
    return -(targets[keep].to(log_prob) * log_prob).sum(-1).mean()
