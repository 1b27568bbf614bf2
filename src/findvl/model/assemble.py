"""Interface predictions -> typed task outputs (similarities between queries and proposals)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from findvl.model.interface import InterfaceOutput
from findvl.model.outputs import (
    EmbeddingPair,
    GenericSegmentationOutput,
    ProposalScores,
    RetrievalOutput,
    TargetedSegmentationOutput,
)


def cosine_logits(queries: torch.Tensor, keys: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale · cos``: ``queries [B,T,C]``, ``keys [B,N,C]`` -> ``[B,T,N]``."""
    return scale * F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).transpose(-1, -2)


def generic(
    out: InterfaceOutput, table: torch.Tensor, scale: torch.Tensor, classes: list[str]
) -> GenericSegmentationOutput:
    """Class logits ``[B,N,K+1]`` = ``scale · cos(object proposals, class embeddings)``."""
    layers = []
    for layer in out.layers:
        obj = layer["p.object"]
        logits = cosine_logits(
            obj.semantic, table[None].expand(obj.semantic.shape[0], -1, -1), scale
        )
        layers.append(ProposalScores(obj.masks, logits))
    return GenericSegmentationOutput(layers, list(classes), table)


def _scores(p, q, space: str, scale: torch.Tensor) -> torch.Tensor:
    if space == "semantic":
        return cosine_logits(q.semantic, p.semantic, scale)
    if space == "pixel":
        return q.pixel @ p.pixel.transpose(1, 2)
    return cosine_logits(q.pixel, p.pixel, scale)


def targeted(
    out: InterfaceOutput,
    task: str,
    proposals: str,
    queries: str,
    valid: dict[str, torch.Tensor],
    scale: torch.Tensor,
    space: str,
) -> TargetedSegmentationOutput:
    """Scores ``[B,T,N]`` of each target query against each proposal of the task's group.

    ``space``: ``"semantic"`` (``scale·cos``), ``"pixel"`` (raw dot), ``"pixel-cosine"``.
    """
    pk, qk = f"{task}/{proposals}", f"{task}/{queries}"
    layers = [
        ProposalScores(layer[pk].masks, _scores(layer[pk], layer[qk], space, scale))
        for layer in out.layers
    ]
    return TargetedSegmentationOutput(layers, valid[qk], out.final[qk].semantic)


def interleave(
    out: InterfaceOutput,
    valid: dict[str, torch.Tensor],
    visual: list[list[bool]],
    scale: torch.Tensor,
    pixel_scores: str,
) -> TargetedSegmentationOutput:
    """Entity scores: visual entities in pixel space, text entities in semantic space."""
    task = "interleave_segmentation"
    pk, qk = f"{task}/p.entity", f"{task}/q.entity"
    n = valid[qk].shape[1]
    is_visual = torch.tensor(
        [row + [False] * (n - len(row)) for row in visual],
        dtype=torch.bool,
        device=valid[qk].device,
    )
    layers = []
    for layer in out.layers:
        p, q = layer[pk], layer[qk]
        if pixel_scores == "dot":
            text = q.semantic @ p.semantic.transpose(1, 2)
            vis = q.pixel @ p.pixel.transpose(1, 2)
        else:
            text = cosine_logits(q.semantic, p.semantic, scale)
            vis = cosine_logits(q.pixel, p.pixel, scale)
        layers.append(ProposalScores(p.masks, torch.where(is_visual[..., None], vis, text)))
    return TargetedSegmentationOutput(layers, valid[qk], out.final[qk].semantic, is_visual)


def retrieval(out: InterfaceOutput, query_key: str) -> RetrievalOutput:
    """Image embedding (pooled image query) and query embedding per layer, ``[B,P]`` each."""
    layers = [
        EmbeddingPair(layer["q.image"].semantic[:, 0], layer[query_key].semantic[:, 0])
        for layer in out.layers
    ]
    objects = out.final["p.object"].semantic if "p.object" in out.final else None
    return RetrievalOutput(layers, objects)
