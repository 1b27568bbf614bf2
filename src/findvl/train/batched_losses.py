"""Batched deep-supervision losses: every layer and image of a task at once.

:func:`matched_mask_losses` matches the ``[L,B,Q,H,W]`` mask logits of all layers in one cost
batch and computes point-sampled BCE and dice of all matched masks in one pass;
:func:`layered_panoptic_targets` / :func:`layered_panoptic_class_loss` give the ``[L,B,Q]`` targets
and the per-layer ``K+1``-class cross-entropy summed over layers; :func:`layered_proposal_targets`
/ :func:`weighted_proposal_ce` give the ``[R,Q]`` target rows of the flattened ``[L,B,T]`` queries
and their weighted soft cross-entropy over proposals. Each equals the per-layer, per-image
function of :mod:`findvl.train.losses` summed, up to float summation order, and draws the same
random numbers in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from findvl.train.losses import LossWeights, point_mask_losses
from findvl.train.mask_logits import MaskLogits
from findvl.train.matcher import BatchMatching, HungarianMatcher
from findvl.train.point_sampling import (
    draw_candidate_points,
    random_point_coords,
    select_uncertain_points,
)

#: Elements of the candidate points chosen from in one block: all layers at once when small,
#: else one layer at a time (blocks much larger than the CPU caches run slower per element).
_CHUNK_ELEMENTS = 1 << 21


def matched_mask_losses(
    matcher: HungarianMatcher,
    masks: torch.Tensor | MaskLogits,
    gt_masks: torch.Tensor,
    gt_counts: Sequence[int],
    class_cost: torch.Tensor,
    *,
    every_layer: bool,
    weights: LossWeights,
    generator: torch.Generator | None = None,
) -> tuple[BatchMatching, torch.Tensor, torch.Tensor]:
    """Match every layer of a task and sum its mask losses over layers (deep supervision).

    Equals, with the same generator, a loop over layers that matches each image
    (:meth:`HungarianMatcher.match`, on the first layer only unless ``every_layer``) and then
    calls :func:`mask_losses` on the layer's matched masks of all images, normalised by their
    number (at least 1).

    Args:
        matcher: the Hungarian matcher.
        masks: ``[L,B,Q,H,W]`` mask logits, layers in matching order (the first is matched
            first; without ``every_layer`` its matching serves every layer), dense or as
            :class:`~findvl.train.mask_logits.MaskLogits` of the ``L*B`` problems (problem
            ``layer * B + image``).
        gt_masks: ``[G,h,w]`` float targets of the ``B`` images, concatenated.
        gt_counts: ``B`` target counts (summing to ``G``).
        class_cost: ``[L'*B,Q,T]`` class term of the matched layers (``L' = L`` with
            ``every_layer``, else 1), padded as for :meth:`HungarianMatcher.match_many`.
        every_layer: match every layer rather than reusing the first layer's matching.
        weights: point-sampling settings (``num_points``, ``oversample_ratio``,
            ``importance_sample_ratio``).
        generator: random generator for the matching and loss points.

    Returns:
        ``(matching, bce, dice)``: the matching of the ``L*B`` problems (problem
        ``layer * B + image``) and the two losses summed over layers.
    """
    batch = len(gt_counts)
    if isinstance(masks, torch.Tensor):
        masks = MaskLogits(masks.flatten(0, 1))
    num_layers, q = masks.num_problems // batch, masks.num_queries
    counts = np.asarray(gt_counts, dtype=np.int64)
    matched_layers = num_layers if every_layer else 1
    per_layer = int(np.minimum(counts, q).sum())  # matched pairs per layer
    active = int((counts > 0).sum()) if q > 0 else 0
    kw = {"device": masks.device, "generator": generator}
    match_coords, candidates, fresh = [], [], []
    for layer in range(num_layers):  # the draws of the per-layer loop, in its order
        if layer < matched_layers and active:
            match_coords.append(random_point_coords(active, matcher.num_points, **kw))
        if per_layer:
            c, f = draw_candidate_points(
                per_layer,
                weights.num_points,
                oversample_ratio=weights.oversample_ratio,
                importance_sample_ratio=weights.importance_sample_ratio,
                **kw,
            )
            candidates.append(c)
            fresh.append(f)
    matching = matcher.match_many(
        masks.head(matched_layers * batch),
        gt_masks if matched_layers == 1 else gt_masks.repeat(matched_layers, 1, 1),
        np.tile(counts, matched_layers),
        class_cost,
        coords=torch.cat(match_coords) if match_coords else None,
    )
    if not every_layer:  # reuse the first layer's matching for all layers
        matching = BatchMatching(
            problem=np.concatenate([matching.problem + k * batch for k in range(num_layers)]),
            pred_idx=np.tile(matching.pred_idx, num_layers),
            tgt_idx=np.tile(matching.tgt_idx, num_layers),
        )
    if not per_layer:
        zero = masks.zero()
        return matching, zero, zero.clone()
    offsets = np.cumsum(counts) - counts
    pred_index = torch.as_tensor(matching.problem * q + matching.pred_idx, device=masks.device)
    gt_index = torch.as_tensor(offsets[matching.problem % batch] + matching.tgt_idx)
    pred = masks.rows(pred_index)  # MxHxW (M = L * per_layer)
    gt = gt_masks[gt_index.to(gt_masks.device)]
    num_uncertain = int(weights.importance_sample_ratio * weights.num_points)
    step = max(1, _CHUNK_ELEMENTS // candidates[0].numel())  # layers per selection block
    coords = torch.cat(
        [
            select_uncertain_points(
                pred[k * per_layer : (k + step) * per_layer, None],
                _cat(candidates[k : k + step]),
                _cat(fresh[k : k + step]),
                num_uncertain,
            )
            for k in range(0, num_layers, step)
        ]
    )
    bce, dice = point_mask_losses(pred, gt, coords, max(1.0, float(per_layer)))
    return matching, bce, dice


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def layered_panoptic_targets(
    matching: BatchMatching,
    gt_classes: list[torch.Tensor],
    *,
    num_layers: int,
    num_queries: int,
    num_classes: int,
) -> torch.Tensor:
    """:func:`panoptic_targets` of every layer and image: ``[L,B,Q]`` int64 (on the CPU).

    Args:
        matching: the ``L*B`` problems' matching (problem ``layer * B + image``).
        gt_classes: ``B`` int64 tensors ``[T_b]`` of GT classes.
        num_layers, num_queries, num_classes: ``L``, ``Q`` and ``K`` (no object is ``K``).
    """
    batch = len(gt_classes)
    counts = np.array([len(c) for c in gt_classes], dtype=np.int64)
    flat = torch.cat([c.reshape(-1).cpu() for c in gt_classes]).numpy()
    target = np.full(num_layers * batch * num_queries, num_classes, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    gt_at = offsets[matching.problem % batch] + matching.tgt_idx
    target[matching.problem * num_queries + matching.pred_idx] = flat[gt_at]
    return torch.from_numpy(target.reshape(num_layers, batch, num_queries))


def layered_panoptic_class_loss(
    logits: torch.Tensor, target_classes: torch.Tensor, *, no_object_weight: float = 0.1
) -> torch.Tensor:
    """:func:`panoptic_class_loss` of each layer, summed over layers.

    Args:
        logits: ``[L,B,Q,K+1]`` class logits.
        target_classes: ``[L,B,Q]`` int64 targets (:func:`layered_panoptic_targets`).
        no_object_weight: class weight of the no-object class.
    """
    num_layers, num_classes = logits.shape[0], logits.shape[-1]
    weight = torch.ones(num_classes, dtype=logits.dtype, device=logits.device)
    weight[-1] = no_object_weight
    flat = target_classes.reshape(-1)
    ce = F.cross_entropy(logits.reshape(-1, num_classes), flat, weight=weight, reduction="none")
    per_layer = ce.reshape(num_layers, -1).sum(-1) / weight[flat].reshape(num_layers, -1).sum(-1)
    return per_layer.sum()


def layered_proposal_targets(
    matching: BatchMatching,
    gt_counts: Sequence[int],
    *,
    num_layers: int,
    num_targets: int,
    num_proposals: int,
    groups: list[torch.Tensor] | None = None,
    image_weights: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`proposal_targets` of every layer and image, as the rows that carry a target.

    Args:
        matching: the ``L*B`` problems' matching (problem ``layer * B + image``).
        gt_counts: ``B`` target counts ``T_b <= T``.
        num_layers, num_targets, num_proposals: ``L``, ``T`` (padded targets) and ``Q``.
        groups: per image ``[T_b]`` int64 group ids (see :func:`proposal_targets`), or None.
        image_weights: ``B`` multipliers of each image's mean CE (default 1).

    Returns:
        ``(rows [R], targets [R,Q], row_weights [R])`` on the CPU: ``rows`` index the
        flattened ``[L,B,T]`` queries; with :func:`weighted_proposal_ce` they give
        ``sum_{l,b} image_weights[b] * proposal_ce_loss(l, b)``.
    """
    batch = len(gt_counts)
    counts = np.asarray(gt_counts, dtype=np.int64)
    target = np.zeros((num_layers, batch, num_targets, num_proposals), dtype=np.float32)
    layer, image = np.divmod(matching.problem, batch)
    target[layer, image, matching.tgt_idx, matching.pred_idx] = 1.0
    for b, g in enumerate(groups or []):
        if g.shape != (counts[b],):
            raise ValueError(f"groups must be [{counts[b]}], got {tuple(g.shape)}")
        same = (g[:, None] == g[None, :]).numpy().astype(np.float32)  # TbxTb
        target[:, b, : counts[b]] = (same / same.sum(-1, keepdims=True)) @ target[:, b, : counts[b]]
    valid = np.arange(num_targets)[None, :] < counts[:, None]  # BxT
    keep = (target.sum(-1) > 0) & valid  # LxBxT
    scale = np.ones(batch) if image_weights is None else np.asarray(image_weights, dtype=np.float64)
    per_row = scale[None, :, None] / np.maximum(keep.sum(-1, keepdims=True), 1)  # LxBx1
    rows = np.flatnonzero(keep)
    row_weights = np.broadcast_to(per_row, keep.shape).reshape(-1)[rows]
    return (
        torch.from_numpy(rows),
        torch.from_numpy(target.reshape(-1, num_proposals)[rows]),
        torch.from_numpy(row_weights.astype(np.float32)),
    )


def weighted_proposal_ce(
    logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor
) -> torch.Tensor:
    """``sum_r w_r * CE(logits_r, targets_r)``: soft cross-entropy rows, weighted.

    Args:
        logits: ``[R,Q]`` logits of the rows (e.g. picked by :func:`layered_proposal_targets`).
        targets: ``[R,Q]`` target distributions.
        row_weights: ``[R]`` weight of each row.
    """
    log_prob = F.log_softmax(logits.float(), dim=-1)
    return -(row_weights.to(log_prob) * (targets.to(log_prob) * log_prob).sum(-1)).sum()
