"""Measure a pretrained model: zero-shot retrieval and dense accuracy on a split in memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
        negative_accuracy: per kind of hard negative in the data (``"colour_swap"``, ...),
            the share (percent) of the captions with such a negative whose image scores the
            caption above it (chance 50); empty without negatives.
        colour_levels: per level of the colour heads, their accuracy on the cells whose
            majority is a thing colour (``thing_patches``; chance ``1/C``) and on all cells;
            None without colour heads or colour labels.
    """

    images: int
    captions: int
    recall_at_1: RetrievalRecall
    dense: DenseAccuracy | None
    dense_levels: list[DenseAccuracy] | None = None
    negative_accuracy: dict[str, float] = field(default_factory=dict)
    colour_levels: list[DenseAccuracy] | None = None

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
def negative_accuracy(
    encode,
    data: PretrainData,
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    *,
    batch_size: int = 128,
) -> dict[str, float]:
    """Per kind of negative in ``data``: how often a caption's image scores it above the
    negative (percent of the captions that have one). ``image_embeds`` ``[N,P]`` and
    ``text_embeds`` ``[M,P]`` are normalised; ``encode(ids, mask)`` embeds texts the same way."""
    out: dict[str, float] = {}
    if data.negative_ids is None:
        return out
    own = (image_embeds[data.caption_image] * text_embeds).sum(-1)  # M
    for r, kind in enumerate(data.negative_kinds):
        made = data.negative_mask[:, r].any(1)
        if not made.any():
            continue
        rows = PretrainData(
            pixels=data.pixels[:0], patch_counts=data.patch_counts[:0],
            caption_ids=data.negative_ids[made, r], caption_mask=data.negative_mask[made, r],
            caption_image=data.caption_image[made], classes=data.classes, image_ids=[],
        )  # fmt: skip
        negative = _embed_texts(encode, rows, batch_size)
        against = (image_embeds[rows.caption_image] * negative).sum(-1)
        out[kind] = round(100.0 * (own[made] > against).float().mean().item(), 2)
    return out


@torch.no_grad()
def evaluate_model(
    model: DenseClipModel | DenseHierarchicalClip, data: PretrainData, *, batch_size: int = 128
) -> PretrainMetrics:
    """Retrieval R@1 and dense accuracy of ``model`` (left in eval mode) on ``data``."""
    model.eval()
    image_embeds, logits, colour_logits = [], [], []
    for start in range(0, len(data), batch_size):
        embeds, levels, colours = model.encode_all(data.pixels[start : start + batch_size])
        image_embeds.append(embeds)
        logits.append(levels)
        colour_logits.append(colours)
    text_embeds = _embed_texts(model.encode_texts, data, batch_size)
    image_embeds = torch.cat(image_embeds)
    thing = torch.tensor(data.classes.isthing)
    per_level = []
    for level in zip(*logits):
        level = torch.cat(level)
        factor = round((data.patch_counts.shape[1] / level.shape[1]) ** 0.5)
        per_level.append(dense_accuracy(level, pool_counts(data.patch_counts, factor), thing))
    colour_levels = None
    if data.patch_colours is not None and colour_logits[0]:
        coloured = torch.arange(data.patch_colours.shape[-1]) > 0  # class 0: no thing
        colour_levels = []
        for level in zip(*colour_logits):
            level = torch.cat(level)
            factor = round((data.patch_colours.shape[1] / level.shape[1]) ** 0.5)
            counts = pool_counts(data.patch_colours, factor)
            colour_levels.append(dense_accuracy(level, counts, coloured))
    return PretrainMetrics(
        images=len(data),
        captions=int(data.caption_ids.shape[0]),
        recall_at_1=retrieval_recall(image_embeds, text_embeds, data.caption_image),
        dense=per_level[0],
        dense_levels=per_level,
        negative_accuracy=negative_accuracy(
            model.encode_texts, data, image_embeds, text_embeds, batch_size=batch_size
        ),
        colour_levels=colour_levels,
    )


@torch.no_grad()
def evaluate_exported(
    vision_dir: str | Path, text_dir: str | Path, data: PretrainData, *, batch_size: int = 128
) -> PretrainMetrics:
    """Zero-shot R@1 (and the negatives' accuracy, when ``data`` has negatives) of the
    exported directories (no dense head): the text tower a
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
        embeds = text(input_ids=ids, attention_mask=mask.long()).text_embeds
        return torch.nn.functional.normalize(embeds, dim=-1)

    text_embeds = _embed_texts(encode, data, batch_size)
    image_embeds = torch.nn.functional.normalize(image_embeds, dim=-1)
    return PretrainMetrics(
        images=len(data),
        captions=int(data.caption_ids.shape[0]),
        recall_at_1=retrieval_recall(image_embeds, text_embeds, data.caption_image),
        dense=None,
        negative_accuracy=negative_accuracy(
            encode, data, image_embeds, text_embeds, batch_size=batch_size
        ),
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
