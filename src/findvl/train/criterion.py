"""The training task's losses: outputs -> weighted losses of all six tasks.

The model holds no loss code; this module matches proposals to targets (Hungarian, per layer)
and sums the official loss terms over every layer (deep supervision). The requests a batch
asks for are :mod:`findvl.train.requests`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from findvl.data.training import TrainExample
from findvl.model.outputs import FindOutput, TargetedSegmentationOutput
from findvl.train.batched_losses import (
    layered_panoptic_class_loss,
    layered_panoptic_targets,
    layered_proposal_targets,
    matched_mask_losses,
    weighted_proposal_ce,
)
from findvl.train.contrastive import caption_infonce, infonce, token_infonce
from findvl.train.losses import LossWeights, mask_losses
from findvl.train.mask_logits import MaskLogits
from findvl.train.matcher import HungarianMatcher, panoptic_class_costs, proposal_class_cost
from findvl.train.requests import caption_rows

#: The targeted segmentation tasks: the name of their loss terms (``NAME_ce``, ``NAME_bce``,
#: ``NAME_dice``; the same name as their metrics) and the :class:`TrainExample` field that gives
#: each target's segment.
TARGETED_TASKS: dict[str, tuple[str, str]] = {
    "grounded_segmentation": ("grounding", "phrase_segments"),
    "interactive_segmentation": ("interactive", "prompt_segments"),
    "interleave_segmentation": ("interleave", "entity_segments"),
}


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


def iou_choice_targets(
    masks: torch.Tensor,
    targets: torch.Tensor,
    counts: list[int],
    num_targets: int,
    temperature: float,
) -> torch.Tensor:
    """Choice targets from mask quality: ``softmax(IoU / temperature)`` over the proposals.

    Args:
        masks: ``[L,B,N,h,w]`` proposal mask logits.
        targets: ``[G,H,W]`` target masks of all images, image after image (``counts[b]``
            each), at any resolution.
        counts: targets per image.
        num_targets: ``T`` (padded targets per image).
        temperature: > 0.

    Returns:
        ``[L,B,T,N]`` distributions (rows of padded targets are uniform; they carry no loss).
    """
    layers, batch, n = masks.shape[:3]
    small = F.interpolate(targets[None].float(), size=masks.shape[-2:], mode="bilinear")[0] > 0.5
    pred = (masks > 0).flatten(3).float()  # LxBxNxP
    iou = masks.new_zeros(layers, batch, num_targets, n, dtype=torch.float32)
    start = 0
    for b, count in enumerate(counts):
        gt = small[start : start + count].flatten(1).float()  # TbxP
        start += count
        inter = torch.einsum("lnp,tp->ltn", pred[:, b], gt)
        union = pred[:, b].sum(-1)[:, None, :] + gt.sum(-1)[None, :, None] - inter
        iou[:, b, :count] = inter / union.clamp(min=1.0)
    return (iou / temperature).softmax(-1)


def layer_masks(layers: list) -> MaskLogits:
    """The mask logits of a task's layers as ``L*B`` problems (problem ``layer * B +
    image``): dense where every layer has its masks (``all_layer_masks``), else as factors of
    the layers' mask embeddings and their mask features (``dense_masks=False``)."""
    if all(layer.masks is not None for layer in layers):
        return MaskLogits(torch.stack([layer.masks for layer in layers]).flatten(0, 1))
    features = layers[-1].features  # one tensor, shared by every layer
    if features is None or any(layer.embed is None for layer in layers):
        raise ValueError(
            "the criterion needs every layer's masks: run the model with all_layer_masks=True "
            "or dense_masks=False"
        )
    return MaskLogits.layered(torch.stack([layer.embed for layer in layers]), features)


class FindCriterion:
    """Weighted losses of a joint forward.

    Args:
        weights: every loss weight (official defaults).
        match_every_layer: redo the Hungarian matching at every layer (official); otherwise
            match once on the final layer and reuse it for the auxiliary layers (faster).
        dense_masks: whether the forward it reads forms every layer's dense mask logits
            (``all_layer_masks``); by default it forms none (``dense_masks=False``) and the
            criterion reads the masks from their factors (:mod:`findvl.train.mask_logits`):
            the same losses, without the ``[L,B,Q,H,W]`` products.
    """

    def __init__(
        self, weights: LossWeights, *, match_every_layer: bool = True, dense_masks: bool = False
    ) -> None:
        self.w = weights
        self.match_every_layer = match_every_layer
        self.dense_masks = dense_masks
        self.matcher = HungarianMatcher(
            cost_mask=weights.mask_bce,
            cost_class=weights.class_ce,
            cost_dice=weights.mask_dice,
            num_points=weights.match_points,
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
        for task, (name, field) in TARGETED_TASKS.items():
            task_out = getattr(out, task)
            if task_out is not None:
                terms.update(self._targeted(name, task_out, examples, gts, field, generator))
        # The initial predictions (layer 0) come from the learned queries alone, the same for
        # every input: their InfoNCE is ln(B) whatever the weights, with no gradient. They are
        # left out, so the retrieval terms fall to 0 when the embeddings separate the batch.
        scale = out.logit_scale
        retrieval = out.image_text_retrieval
        if retrieval is not None:
            terms["retrieval"] = self._retrieval(retrieval, examples, scale)
            if (
                self.w.retrieval_tokens
                and retrieval.tokens is not None
                and retrieval.objects is not None
            ):
                terms["retrieval_tokens"] = sum(
                    token_infonce(p.objects, retrieval.tokens, retrieval.token_valid, scale)
                    for p in retrieval.layers[1:]
                )
        if out.interleave_retrieval is not None:
            terms["interleave_itc"] = sum(
                infonce(p.query, p.image, scale) for p in out.interleave_retrieval.layers[1:]
            )
        terms["total"] = sum(getattr(self.w, k) * v for k, v in terms.items())
        return terms

    def _retrieval(self, retrieval, examples, scale) -> torch.Tensor:
        """Image-caption InfoNCE of every layer after the first; with further captions per
        image (``RetrievalOutput.more_valid``) :func:`caption_infonce` over all of them."""
        layers = retrieval.layers[1:]
        if retrieval.more_valid is None:
            return sum(infonce(p.image, p.query, scale) for p in layers)
        valid = retrieval.more_valid
        _, true = caption_rows(
            examples, captions=self.w.retrieval_captions, negatives=self.w.retrieval_negatives
        )
        b = valid.shape[0]
        rows = torch.arange(b, device=valid.device)
        slot = torch.arange(valid.shape[1], device=valid.device)
        is_true = slot[None] < torch.tensor(true, device=valid.device)[:, None]  # [B,K]
        owner = torch.cat([rows, rows[:, None].expand_as(valid)[valid]])
        positive = torch.cat([torch.ones_like(rows, dtype=torch.bool), is_true[valid]])
        return sum(
            caption_infonce(p.image, torch.cat([p.query, p.more[valid]]), owner, positive, scale)
            for p in layers
        )

    def _panoptic(self, out, examples, gts, generator):
        task = out.generic_segmentation
        layers = task.layers[::-1]  # final layer first: it is matched first
        logits = torch.stack([layer.logits for layer in layers])  # LxBxQxK+1
        masks = layer_masks(layers)  # L*B problems of Q masks
        classes = [ex.classes for ex in examples]
        matched = logits if self.match_every_layer else logits[:1]  # L'xBxQxK+1
        cost = panoptic_class_costs(matched.detach().flatten(0, 1), classes * matched.shape[0])
        m, bce, dice = matched_mask_losses(
            self.matcher,
            masks,
            torch.cat(gts),
            [g.shape[0] for g in gts],
            cost,
            every_layer=self.match_every_layer,
            weights=self.w,
            generator=generator,
        )
        targets = layered_panoptic_targets(
            m,
            classes,
            num_layers=len(layers),
            num_queries=logits.shape[2],
            num_classes=len(task.class_names),
        )
        ce = layered_panoptic_class_loss(
            logits, targets.to(logits.device), no_object_weight=self.w.no_object
        )
        return {"class_ce": ce, "mask_bce": bce, "mask_dice": dice}

    def _targeted(self, name, task: TargetedSegmentationOutput, examples, gts, field, generator):
        layers = task.layers[::-1]  # final layer first: it is matched first
        logits = torch.stack([layer.logits for layer in layers])  # LxBxTxN
        masks = layer_masks(layers)  # L*B problems of N masks
        segments = [np.asarray(getattr(ex, field), dtype=np.int64) for ex in examples]
        sizes = np.array([g.shape[0] for g in gts], dtype=np.int64)
        picks = np.concatenate([s + o for s, o in zip(segments, np.cumsum(sizes) - sizes)])
        targets = torch.cat(gts)[torch.as_tensor(picks, device=logits.device)]  # GxHxW
        matched = logits if self.match_every_layer else logits[:1]
        cost = proposal_class_cost(matched.detach().flatten(0, 1).transpose(1, 2))  # L'BxNxT
        counts = [len(s) for s in segments]
        m, bce, dice = matched_mask_losses(
            self.matcher,
            masks,
            targets,
            counts,
            cost,
            every_layer=self.match_every_layer,
            weights=self.w,
            generator=generator,
        )
        grounding = name == "grounding"
        weights = [
            (self.w.grounding_class if ex.phrases_are_classes else self.w.grounding_text)
            if grounding
            else 1.0
            for ex in examples
        ]
        rows, dist, row_weights = layered_proposal_targets(
            m,
            counts,
            num_layers=len(layers),
            num_targets=logits.shape[2],
            num_proposals=logits.shape[3],
            groups=[_text_groups(ex.phrases) for ex in examples] if grounding else None,
            image_weights=[w / len(examples) for w in weights],
        )
        if self.w.initial_choice != 1.0:  # the initial layer is the last of ``layers``
            initial = rows >= (len(layers) - 1) * logits.shape[1] * logits.shape[2]
            row_weights = torch.where(initial, row_weights * self.w.initial_choice, row_weights)
        device = logits.device
        if self.w.choice_iou_temperature > 0:
            dense = masks.detached_dense().unflatten(0, logits.shape[:2])  # LxBxNxHxW
            dist = iou_choice_targets(
                dense, targets, counts, logits.shape[2], self.w.choice_iou_temperature
            ).flatten(0, 2)[rows.to(device)]
        ce = weighted_proposal_ce(
            logits.flatten(0, 2)[rows.to(device)], dist.to(device), row_weights.to(device)
        )
        return {f"{name}_ce": ce, f"{name}_bce": bce, f"{name}_dice": dice}
