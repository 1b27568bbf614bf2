"""Measure a pretrained model: zero-shot retrieval and dense accuracy on a split in memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from findvl.encoders.loading import offline_quiet
from findvl.pretrain.data import PretrainData
from findvl.pretrain.hierarchical_model import DenseHierarchicalClip
from findvl.pretrain.losses import pool_counts
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
        dense: per-patch accuracy of the (discarded) dense head on the finest label grid;
            None when not measured.
        dense_levels: the same for every level the dense heads read, finest first (each
            against the labels pooled to its cells): a hierarchical tower tells shapes apart
            on its coarser levels, where a cell sees the whole shape.
    """

    images: int
    captions: int
    recall_at_1: RetrievalRecall
    dense: DenseAccuracy | None
    dense_levels: list[DenseAccuracy] | None = None

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
    model: DenseClipModel | DenseHierarchicalClip, data: PretrainData, *, batch_size: int = 128
) -> PretrainMetrics:
    """Retrieval R@1 and dense accuracy of ``model`` (left in eval mode) on ``data``."""
    model.eval()
    image_embeds, logits = [], []
    for start in range(0, len(data), batch_size):
        embeds, levels = model.encode_dense(data.pixels[start : start + batch_size])
        image_embeds.append(embeds)
        logits.append(levels)
    text_embeds = _embed_texts(model.encode_texts, data, batch_size)
    thing = torch.tensor(data.classes.isthing)
    per_level = []
    for level in zip(*logits):
        level = torch.cat(level)
        factor = round((data.patch_counts.shape[1] / level.shape[1]) ** 0.5)
        per_level.append(dense_accuracy(level, pool_counts(data.patch_counts, factor), thing))
    return PretrainMetrics(
        images=len(data),
        captions=int(data.caption_ids.shape[0]),
        recall_at_1=retrieval_recall(torch.cat(image_embeds), text_embeds, data.caption_image),
        dense=per_level[0],
        dense_levels=per_level,
    )


@torch.no_grad()
def evaluate_exported(
    vision_dir: str | Path, text_dir: str | Path, data: PretrainData, *, batch_size: int = 128
) -> PretrainMetrics:
    """Zero-shot R@1 of the exported directories (no dense head): the text tower a
    ``CLIPTextModelWithProjection``, the image tower a ``RegNetModel`` / ``ConvNextModel`` + its
    ``visual_projection.safetensors`` or a ``CLIPVisionModelWithProjection``."""
    from transformers import CLIPTextModelWithProjection

    with offline_quiet():
        embed_images = _exported_image_embedder(Path(vision_dir))
        text = CLIPTextModelWithProjection.from_pretrained(text_dir, local_files_only=True)
    text.eval()
    image_embeds = torch.cat(
        [
            embed_images(data.pixels[start : start + batch_size])
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


def _exported_image_embedder(directory: Path):
    """``[B,3,S,S] -> [B,P]`` (unnormalised) image embeddings of an exported image tower."""
    import transformers
    from safetensors.torch import load_file

    from findvl.pretrain.export import PROJECTION_FILE

    projection = directory / PROJECTION_FILE
    if projection.is_file():
        tower = transformers.AutoModel.from_pretrained(directory, local_files_only=True)
        weight = load_file(str(projection))["weight"]
        tower.eval()
        return lambda pixels: tower(pixel_values=pixels).pooler_output.flatten(1) @ weight.T
    tower = transformers.CLIPVisionModelWithProjection.from_pretrained(
        directory, local_files_only=True
    )
    tower.eval()
    return lambda pixels: tower(pixel_values=pixels).image_embeds
