"""The pretraining objectives: CLIP's symmetric InfoNCE and a dense per-patch classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    negative_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching pairs (row ``i`` of each is a pair).

    Args:
        image_embeds: ``[B,P]`` L2-normalised.
        text_embeds: ``[B,P]`` L2-normalised.
        logit_scale: scalar inverse temperature (already exponentiated).
        negative_embeds: ``[Q,P]`` L2-normalised hard negative captions (NegCLIP), extra
            columns of every image's image->text softmax; the text->image side is unchanged.
    """
    logits = logit_scale * image_embeds @ text_embeds.T  # BxB
    target = torch.arange(logits.shape[0], device=logits.device)
    image_to_text = logits
    if negative_embeds is not None and len(negative_embeds):
        image_to_text = torch.cat([logits, logit_scale * image_embeds @ negative_embeds.T], 1)
    return 0.5 * (F.cross_entropy(image_to_text, target) + F.cross_entropy(logits.T, target))


def dense_loss(
    patch_logits: torch.Tensor,
    patch_counts: torch.Tensor,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted soft cross-entropy of per-patch logits against each patch's class fractions.

    Args:
        patch_logits: ``[B,N,K]``.
        patch_counts: ``[B,N,K]`` pixels of each class in each patch.
        class_weight: ``[K]`` weight of each class (None: all 1). The loss is normalised by
            the total weight, so only the relative weights matter.
    """
    counts = patch_counts.float()
    target = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    if class_weight is not None:
        target = target * class_weight.to(target)
    per_patch = -(target * F.log_softmax(patch_logits, dim=-1)).sum(-1)  # BxN
    return per_patch.sum() / target.sum().clamp(min=1e-6)


def pool_counts(patch_counts: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B,g*g,K]`` counts, square row-major grid -> ``[B,(g/f)**2,K]``: f x f cells summed."""
    if factor == 1:
        return patch_counts
    b, n, k = patch_counts.shape
    g = round(n**0.5)
    if g * g != n or g % factor:
        raise ValueError(f"cannot pool a {n}-cell grid by {factor}")
    grid = patch_counts.reshape(b, g // factor, factor, g // factor, factor, k)
    return grid.sum((2, 4), dtype=patch_counts.dtype).reshape(b, -1, k)


def multilevel_dense_loss(
    level_logits: tuple[torch.Tensor, ...],
    patch_counts: torch.Tensor,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of :func:`dense_loss` over levels, each against the counts pooled to its grid.

    Args:
        level_logits: ``[B,N_l,K]`` per level, finest first; ``N_0`` is the grid of
            ``patch_counts`` and each further level halves the grid side.
        patch_counts: ``[B,N_0,K]``.
        class_weight: ``[K]`` or None.
    """
    losses = []
    for logits in level_logits:
        factor = round((patch_counts.shape[1] / logits.shape[1]) ** 0.5)
        losses.append(dense_loss(logits, pool_counts(patch_counts, factor), class_weight))
    return torch.stack(losses).mean()


def balanced_class_weight(patch_counts: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """``[K]`` weights ``frequency ** -power`` (absent classes 0), scaled to mean 1 over pixels.

    With ``power=0.5`` a class 16 times rarer weighs 4 times more: the small shapes are not
    drowned by the large background regions.

    Args:
        patch_counts: ``[..., K]`` pixel counts.
        power: 0 gives equal weights, 1 full inverse-frequency balancing.
    """
    totals = patch_counts.reshape(-1, patch_counts.shape[-1]).sum(0, dtype=torch.float64)
    frequency = totals / totals.sum().clamp(min=1)
    weight = torch.where(frequency > 0, frequency.clamp(min=1e-12) ** -power, 0.0)
    return (weight / (weight * frequency).sum()).float()
