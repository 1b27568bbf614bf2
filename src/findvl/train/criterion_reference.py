"""The per-image loop criterion, kept as the reference of the batched :class:`FindCriterion`.

:class:`ReferenceCriterion` matches and computes the losses of one image and one layer at a time,
with the per-image functions of :mod:`findvl.train.matcher` and :mod:`findvl.train.losses`. With
the same generator it gives the numbers of :class:`FindCriterion` (up to float summation order);
tests compare the two and ``benchmarks/train_step.py --reference`` times them side by side.
"""

from __future__ import annotations

import torch

from findvl.model.outputs import TargetedSegmentationOutput
from findvl.train.criterion import FindCriterion, _text_groups
from findvl.train.losses import (
    panoptic_class_loss,
    panoptic_targets,
    proposal_ce_loss,
    proposal_targets,
)
from findvl.train.matcher import panoptic_class_cost, proposal_class_cost


class ReferenceCriterion(FindCriterion):
    """:class:`FindCriterion` with its matching and segmentation losses looped per image
    (on dense masks of every layer)."""

    def __init__(self, weights, *, match_every_layer: bool = True) -> None:
        super().__init__(weights, match_every_layer=match_every_layer, dense_masks=True)

    def _panoptic(self, out, examples, gts, generator):
        task = out.generic_segmentation
        k = len(task.class_names)
        ce = bce = dice = 0.0
        cache: dict[int, object] = {}
        for layer in reversed(task.layers):
            targets, pred, gt = [], [], []
            for b, ex in enumerate(examples):
                cls = ex.classes.to(layer.logits.device)
                m = cache.get(b)
                if m is None:
                    cost = panoptic_class_cost(layer.logits[b].detach(), cls)
                    m = self.matcher.match(layer.masks[b], gts[b], cost, generator=generator)
                    if not self.match_every_layer:
                        cache[b] = m
                targets.append(
                    panoptic_targets(layer.logits.shape[1], k, cls, m.pred_idx, m.tgt_idx)
                )
                pred.append(layer.masks[b][m.pred_idx])
                gt.append(gts[b][m.tgt_idx])
            ce = ce + panoptic_class_loss(
                layer.logits, torch.stack(targets), no_object_weight=self.w.no_object
            )
            lb, ld = self._mask_terms(pred, gt, generator)
            bce, dice = bce + lb, dice + ld
        return {"class_ce": ce, "mask_bce": bce, "mask_dice": dice}

    def _targeted(self, name, task: TargetedSegmentationOutput, examples, gts, field, generator):
        ce = bce = dice = 0.0
        cache: dict[int, object] = {}
        for layer in reversed(task.layers):
            pred, gt = [], []
            for b, ex in enumerate(examples):
                segments = getattr(ex, field)
                t = len(segments)
                logits = layer.logits[b, :t]  # TxN
                target_masks = gts[b][torch.tensor(segments, dtype=torch.long)]
                m = cache.get(b)
                if m is None:
                    cost = proposal_class_cost(logits.detach().t())
                    m = self.matcher.match(layer.masks[b], target_masks, cost, generator=generator)
                    if not self.match_every_layer:
                        cache[b] = m
                groups = _text_groups(ex.phrases) if name == "grounding" else None
                dist = proposal_targets(logits.shape[1], t, m.pred_idx, m.tgt_idx, groups=groups)
                weight = 1.0
                if name == "grounding":
                    weight = (
                        self.w.grounding_class if ex.phrases_are_classes else self.w.grounding_text
                    )
                if layer is task.layers[0]:  # the learned queries' own scores
                    weight = weight * self.w.initial_choice
                ce = ce + weight * proposal_ce_loss(logits, dist.to(logits.device)) / len(examples)
                pred.append(layer.masks[b][m.pred_idx])
                gt.append(target_masks[m.tgt_idx])
            lb, ld = self._mask_terms(pred, gt, generator)
            bce, dice = bce + lb, dice + ld
        return {f"{name}_ce": ce, f"{name}_bce": bce, f"{name}_dice": dice}
