"""Zero-shot retrieval recall and dense per-patch accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RetrievalRecall:
    """Recall@k of image -> caption and caption -> image retrieval, in percent.

    Attributes:
        image_to_text: share of images whose top ``k`` captions hold one of their own.
        text_to_image: share of captions whose top ``k`` images hold their own image.
    """

    image_to_text: float
    text_to_image: float

    @property
    def mean(self) -> float:
        return 0.5 * (self.image_to_text + self.text_to_image)


def retrieval_recall(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_image: torch.Tensor, *, k: int = 1
) -> RetrievalRecall:
    """Recall@k with several captions per image.

    Args:
        image_embeds: ``[N,P]`` normalised.
        text_embeds: ``[M,P]`` normalised.
        text_image: ``[M]`` index of each caption's image.
        k: ranks counted as hits. Ties are broken towards the lower index.
    """
    similarity = image_embeds @ text_embeds.T  # NxM
    owner = text_image[None, :] == torch.arange(len(image_embeds))[:, None]  # NxM
    top_texts = similarity.topk(min(k, similarity.shape[1]), dim=1).indices  # Nxk
    i2t = owner.gather(1, top_texts).any(1).float().mean().item()
    top_images = similarity.topk(min(k, similarity.shape[0]), dim=0).indices  # kxM
    t2i = (top_images == text_image[None, :]).any(0).float().mean().item()
    return RetrievalRecall(image_to_text=100.0 * i2t, text_to_image=100.0 * t2i)


@dataclass
class DenseAccuracy:
    """Per-patch classification accuracy, in percent, against each patch's majority class.

    Attributes:
        all_patches: every patch with pixels.
        thing_patches: patches whose majority class is not void and not a background (stuff)
            class, i.e. the shapes; the classes counted are ``thing_classes``.
    """

    all_patches: float
    thing_patches: float


def dense_accuracy(
    patch_logits: torch.Tensor, patch_counts: torch.Tensor, thing_classes: torch.Tensor
) -> DenseAccuracy:
    """``[B,N,K]`` logits and pixel counts, ``[K]`` bool thing classes -> accuracies."""
    majority = patch_counts.argmax(-1)  # BxN
    valid = patch_counts.sum(-1) > 0
    correct = (patch_logits.argmax(-1) == majority) & valid
    thing = valid & thing_classes.to(majority.device)[majority]
    return DenseAccuracy(
        all_patches=100.0 * correct.sum().item() / max(1, valid.sum().item()),
        thing_patches=100.0 * (correct & thing).sum().item() / max(1, thing.sum().item()),
    )
