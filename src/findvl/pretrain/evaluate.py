"""Measure a pretrained model: zero-shot retrieval and dense accuracy on a split in memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from findvl.encoders.loading import offline_quiet
from findvl.pretrain.data import PretrainData
from findvl.pretrain.metrics import (
    DenseAccuracy,
    RetrievalRecall,
    dense_accuracy,
    retrieval_recall,
)
from findvl.pretrain.model import DenseClipModel


@dataclass
class PretrainMetrics:
    """Quality of the two towers on one split.

    Attributes:
        images: images of the split.
        captions: captions of the split.
        recall_at_1: zero-shot retrieval among all images and captions of the split.
        dense: per-patch accuracy of the (discarded) dense head; None when not measured.
    """

    images: int
    captions: int
    recall_at_1: RetrievalRecall
    dense: DenseAccuracy | None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["recall_at_1"]["mean"] = self.recall_at_1.mean
        return out


@torch.no_grad()
def _embed_texts(encode, data: PretrainData, batch_size: int) -> torch.Tensor:
    chunks = []
    for start in range(0, data.caption_ids.shape[0], batch_size):
        mask = data.caption_mask[start : start + batch_size]
        length = int(mask.sum(1).max())
        ids = data.caption_ids[start : start + batch_size, :length]
        chunks.append(encode(ids, mask[:, :length]))
    return torch.cat(chunks)


@torch.no_grad()
def evaluate_model(
    model: DenseClipModel, data: PretrainData, *, batch_size: int = 128
) -> PretrainMetrics:
    """Retrieval R@1 and dense accuracy of ``model`` (left in eval mode) on ``data``."""
    model.eval()
    image_embeds, logits = [], []
    for start in range(0, len(data), batch_size):
        embeds, patches = model.encode_images(data.pixels[start : start + batch_size])
        image_embeds.append(embeds)
        logits.append(model.dense_head(patches))
    text_embeds = _embed_texts(model.encode_texts, data, batch_size)
    thing = torch.tensor(data.classes.isthing)
    return PretrainMetrics(
        images=len(data),
        captions=int(data.caption_ids.shape[0]),
        recall_at_1=retrieval_recall(torch.cat(image_embeds), text_embeds, data.caption_image),
        dense=dense_accuracy(torch.cat(logits), data.patch_counts, thing),
    )


@torch.no_grad()
def evaluate_exported(
    vision_dir: str | Path, text_dir: str | Path, data: PretrainData, *, batch_size: int = 128
) -> PretrainMetrics:
    """Zero-shot R@1 of exported ``CLIP*ModelWithProjection`` directories (no dense head)."""
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    with offline_quiet():
        vision = CLIPVisionModelWithProjection.from_pretrained(vision_dir, local_files_only=True)
        text = CLIPTextModelWithProjection.from_pretrained(text_dir, local_files_only=True)
    vision.eval()
    text.eval()
    image_embeds = torch.cat(
        [
            vision(pixel_values=data.pixels[start : start + batch_size]).image_embeds
            for start in range(0, len(data), batch_size)
        ]
    )

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return text(input_ids=ids, attention_mask=mask.long()).text_embeds

    text_embeds = _embed_texts(encode, data, batch_size)
    normalize = torch.nn.functional.normalize
    return PretrainMetrics(
        images=len(data),
        captions=int(data.caption_ids.shape[0]),
        recall_at_1=retrieval_recall(
            normalize(image_embeds, dim=-1), normalize(text_embeds, dim=-1), data.caption_image
        ),
        dense=None,
    )
