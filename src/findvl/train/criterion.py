"""The training task: examples -> requests, and outputs -> weighted losses of all six tasks.

The model holds no loss code; this module matches proposals to targets (Hungarian, per layer)
and sums the official loss terms over every layer (deep supervision).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from findvl.data.training import TrainExample
from findvl.model.outputs import FindOutput, TargetedSegmentationOutput
from findvl.model.requests import (
    Entity,
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
    VisualReference,
)
from findvl.train.losses import (
    LossWeights,
    infonce,
    mask_losses,
    panoptic_class_loss,
    panoptic_targets,
    proposal_ce_loss,
    proposal_targets,
)
from findvl.train.matcher import HungarianMatcher, panoptic_class_cost, proposal_class_cost


def build_requests(examples: list[TrainExample], class_names: list[str]) -> list:
    """One request per task for a batch; a task is left out if some image has no target."""
    requests: list = [GenericSegmentation(list(class_names))]
    if all(ex.phrases for ex in examples):
        requests.append(GroundedSegmentation([list(ex.phrases) for ex in examples]))
    if all(ex.prompts for ex in examples):
        requests.append(
            InteractiveSegmentation([[VisualPrompt(p) for p in ex.prompts] for ex in examples])
        )
    if all(ex.caption for ex in examples):
        requests.append(ImageTextRetrieval([ex.caption for ex in examples]))
    if all(ex.entity_spans for ex in examples):
        texts = [
            InterleavedText(
                ex.entity_text,
                [
                    Entity(s, e, None if k is None else VisualReference(None, VisualPrompt(k)))
                    for (s, e), k in zip(ex.entity_spans, ex.entity_strokes)
                ],
            )
            for ex in examples
        ]
        requests += [InterleaveSegmentation(texts), InterleaveRetrieval(texts)]
    return requests


def gt_on_canvas(masks: torch.Tensor, input_size, canvas) -> torch.Tensor:
    """``[N,h,w]`` bool masks of an image -> ``[N,H,W]`` float on the padded canvas."""
    x = masks.float()
    if tuple(x.shape[-2:]) != tuple(input_size):
        x = F.interpolate(x[None], size=tuple(input_size), mode="nearest")[0]
    out = x.new_zeros(x.shape[0], *canvas)
    out[:, : x.shape[1], : x.shape[2]] = x
    return out


def _text_groups(phrases: list[str]) -> torch.Tensor:
    digests = [int(hashlib.md5(p.encode()).hexdigest()[:12], 16) for p in phrases]
    return torch.tensor(digests, dtype=torch.long)


class FindCriterion:
    """Weighted losses of a joint forward.

    Args:
        weights: every loss weight (official defaults).
        match_every_layer: redo the Hungarian matching at every layer (official); otherwise
            match once on the final layer and reuse it for the auxiliary layers (faster).
    """

    def __init__(self, weights: LossWeights, *, match_every_layer: bool = True) -> None:
        self.w = weights
        self.match_every_layer = match_every_layer
        self.matcher = HungarianMatcher(
            cost_mask=weights.mask_bce,
            cost_class=weights.class_ce,
            cost_dice=weights.mask_dice,
            num_points=weights.num_points,
        )

    def _mask_terms(self, pred: list[torch.Tensor], gt: list[torch.Tensor], generator):
        pred_all, gt_all = torch.cat(pred), torch.cat(gt)
        n = max(1.0, float(gt_all.shape[0]))
        return mask_losses(
            pred_all,
            gt_all,
            n,
            num_points=self.w.num_points,
            oversample_ratio=self.w.oversample_ratio,
            importance_sample_ratio=self.w.importance_sample_ratio,
            generator=generator,
        )

    def __call__(
        self,
        out: FindOutput,
        examples: list[TrainExample],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms summed over layers, and ``"total"`` (weighted sum)."""
        gts = [
            gt_on_canvas(ex.masks, size, out.canvas).to(out.logit_scale.device)
            for ex, size in zip(examples, out.input_sizes)
        ]
        terms: dict[str, torch.Tensor] = {}
        if out.generic_segmentation is not None:
            terms.update(self._panoptic(out, examples, gts, generator))
        pairs = (
            ("grounding", out.grounded_segmentation, "phrase_segments"),
            ("spatial", out.interactive_segmentation, "prompt_segments"),
            ("interleave", out.interleave_segmentation, "entity_segments"),
        )
        for name, task_out, field in pairs:
            if task_out is not None:
                terms.update(self._targeted(name, task_out, examples, gts, field, generator))
        scale = out.logit_scale
        if out.image_text_retrieval is not None:
            terms["retrieval"] = sum(
                infonce(p.image, p.query, scale) for p in out.image_text_retrieval.layers
            )
        if out.interleave_retrieval is not None:
            terms["interleave_itc"] = sum(
                infonce(p.query, p.image, scale) for p in out.interleave_retrieval.layers
            )
        terms["total"] = sum(getattr(self.w, k) * v for k, v in terms.items())
        return terms

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
                ce = ce + weight * proposal_ce_loss(logits, dist.to(logits.device)) / len(examples)
                pred.append(layer.masks[b][m.pred_idx])
                gt.append(target_masks[m.tgt_idx])
            lb, ld = self._mask_terms(pred, gt, generator)
            bce, dice = bce + lb, dice + ld
        return {f"{name}_ce": ce, f"{name}_bce": bce, f"{name}_dice": dice}
