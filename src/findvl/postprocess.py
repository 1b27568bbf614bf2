"""From mask logits on the padded canvas to results on the original image.

Panoptic, instance and semantic inference follow Mask2Former (as the released FIND does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from findvl.model.outputs import masks_to_original

#: Minimum class score of a proposal kept by panoptic inference: the one value shared by
#: evaluation, the quickstart report's pictures and ``findvl segment`` (``--threshold``).
OBJECT_THRESHOLD = 0.8


#: The canvas-to-image conversion (:meth:`findvl.model.outputs.FindOutput.to_original` is the
#: method to call on a forward's output).
to_original = masks_to_original


@dataclass
class PanopticResult:
    """Panoptic segmentation of one image.

    Attributes:
        segmentation: ``[H,W]`` int64 segment id per pixel (0 = no segment).
        segments: one dict per segment: ``id``, ``category`` (class index), ``score``,
            ``isthing``, ``area``.
    """

    segmentation: torch.Tensor
    segments: list[dict]


def kept_objects(class_logits: torch.Tensor, object_threshold: float) -> torch.Tensor:
    """``[N]`` bool: the proposals panoptic inference keeps (a class other than "no object"
    with probability above ``object_threshold``); it reads no mask of the others, so a caller
    may form only these proposals' masks and pass their rows alone."""
    scores, labels = class_logits.softmax(-1).max(-1)
    return (labels != class_logits.shape[-1] - 1) & (scores > object_threshold)


def panoptic_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    isthing: list[bool],
    object_threshold: float = OBJECT_THRESHOLD,
    overlap_threshold: float = 0.8,
) -> PanopticResult:
    """Mask2Former panoptic merging.

    Args:
        class_logits: ``[N,K+1]`` (last = no object).
        mask_logits: ``[N,H,W]`` on the output grid.
        isthing: per class, whether it is a thing (stuff segments of a class are merged).
        object_threshold: minimum class score to keep a proposal (in ``[0, 1]``).
        overlap_threshold: minimum visible/original area ratio to keep a segment.
    """
    scores, labels = class_logits.softmax(-1).max(-1)
    keep = kept_objects(class_logits, object_threshold)
    scores, labels, masks = scores[keep], labels[keep], mask_logits[keep].sigmoid()
    h, w = mask_logits.shape[-2:]
    seg = torch.zeros(h, w, dtype=torch.long)
    segments: list[dict] = []
    if masks.shape[0] == 0:
        return PanopticResult(seg, segments)
    owner = (scores[:, None, None] * masks).argmax(0)
    stuff_ids: dict[int, int] = {}
    for k in range(masks.shape[0]):
        label = int(labels[k])
        region = (owner == k) & (masks[k] >= 0.5)
        area, original = int(region.sum()), int((masks[k] >= 0.5).sum())
        if area == 0 or original == 0 or area / original < overlap_threshold:
            continue
        if not isthing[label] and label in stuff_ids:
            seg[region] = stuff_ids[label]
            seg_info = next(s for s in segments if s["id"] == stuff_ids[label])
            seg_info["area"] += area
            continue
        new_id = len(segments) + 1
        seg[region] = new_id
        if not isthing[label]:
            stuff_ids[label] = new_id
        segments.append(
            {
                "id": new_id,
                "category": label,
                "score": float(scores[k]),
                "isthing": isthing[label],
                "area": area,
            }
        )
    return PanopticResult(seg, segments)


@dataclass
class InstanceResult:
    """``scores [M]``, ``labels [M]`` (class index), ``masks [M,H,W]`` bool."""

    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def instance_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    top_k: int = 100,
    keep_classes: list[bool] | None = None,
) -> InstanceResult:
    """Top-k (proposal, class) pairs; score = class prob × mean mask prob inside the mask."""
    probs = class_logits.softmax(-1)[:, :-1]  # NxK
    if keep_classes is not None:
        probs = probs * torch.tensor(keep_classes, dtype=probs.dtype)
    n, k = probs.shape
    top = probs.flatten().topk(min(top_k, n * k))
    index, labels = top.indices // k, top.indices % k
    masks = mask_logits[index]
    binary = masks > 0
    mask_score = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    valid = top.values > 0
    return InstanceResult((top.values * mask_score)[valid], labels[valid], binary[valid])


def semantic_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """``[K,H,W]`` class scores = ``Σ_n softmax(class)[n,:K] · sigmoid(mask_n)``."""
    return torch.einsum("nk,nhw->khw", class_logits.softmax(-1)[:, :-1], mask_logits.sigmoid())
