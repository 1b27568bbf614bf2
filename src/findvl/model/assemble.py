"""Interface predictions -> typed task outputs: the score functions and assemblies the task
modules (:mod:`findvl.model.tasks`) share."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from findvl.model.outputs import (
    ClassScores,
    EmbeddingPair,
    GenericSegmentationOutput,
    ProposalScores,
    RetrievalOutput,
    TargetedSegmentationOutput,
)
from findvl.model.sequence_types import InterfaceOutput, SlotInput, SlotPrediction
from findvl.prototypes import IMAGE_QUERY, OBJECT_PROPOSALS

#: ``score(proposals, queries)`` -> ``[B,T,N]``: how well each of N proposals answers each of T
#: target queries (both predictions of one layer).
ScoreFn = Callable[[SlotPrediction, SlotPrediction], torch.Tensor]


def cosine_logits(queries: torch.Tensor, keys: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale · cos``: ``queries [B,T,C]``, ``keys [B,N,C]`` -> ``[B,T,N]``."""
    return scale * F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).transpose(-1, -2)


def semantic_cosine(scale: torch.Tensor) -> ScoreFn:
    """``scale · cos`` of the semantic embeddings."""
    return lambda p, q: cosine_logits(q.semantic, p.semantic, scale)


def semantic_dot(p: SlotPrediction, q: SlotPrediction) -> torch.Tensor:
    """Raw dot products of the semantic embeddings."""
    return q.semantic @ p.semantic.transpose(1, 2)


def pixel_dot(p: SlotPrediction, q: SlotPrediction) -> torch.Tensor:
    """Raw dot products of the pixel embeddings (the released weights' interactive scores)."""
    return q.pixel @ p.pixel.transpose(1, 2)


def pixel_cosine(scale: torch.Tensor) -> ScoreFn:
    """``scale · cos`` of the pixel embeddings."""
    return lambda p, q: cosine_logits(q.pixel, p.pixel, scale)


def generic(
    out: InterfaceOutput, table: torch.Tensor, scale: torch.Tensor, classes: list[str]
) -> GenericSegmentationOutput:
    """Class logits ``[B,N,K+1]`` = ``scale · cos(object proposals, class embeddings)``."""
    layers = []
    for layer in out.layers:
        obj = layer[OBJECT_PROPOSALS]
        logits = cosine_logits(
            obj.semantic, table[None].expand(obj.semantic.shape[0], -1, -1), scale
        )
        layers.append(ClassScores(obj.masks, logits, obj.pixel, out.mask_features))
    return GenericSegmentationOutput(layers, list(classes), table)


def targeted(
    out: InterfaceOutput,
    proposals: str,
    queries: str,
    valid: torch.Tensor,
    score: ScoreFn,
    is_visual: torch.Tensor | None = None,
    embeddings: torch.Tensor | None = None,
) -> TargetedSegmentationOutput:
    """Scores ``[B,T,N]`` of each target query (slot ``queries``) against each proposal (slot
    ``proposals``) at every layer; ``valid [B,T]`` marks real targets. The output's target
    embeddings are the final layer's queries, or ``embeddings [B,T,P]`` where the scores read
    those instead."""
    layers = [
        ProposalScores(
            layer[proposals].masks,
            score(layer[proposals], layer[queries]),
            layer[proposals].pixel,
            out.mask_features,
        )
        for layer in out.layers
    ]
    if embeddings is None:
        embeddings = out.final[queries].semantic
    return TargetedSegmentationOutput(layers, valid, embeddings, is_visual)


def retrieval(
    out: InterfaceOutput,
    query_key: str,
    tokens: SlotInput | None = None,
    query_valid: torch.Tensor | None = None,
) -> RetrievalOutput:
    """Image embedding (pooled image query) and query embedding per layer, ``[B,P]`` each,
    with the layer's object proposals where the prototype has them; ``tokens``: the caption
    tokens' slot, kept for the token-level training term (the first caption's tokens).
    ``query_valid [B,K]``: where the query slot holds ``K > 1`` queries per image, queries
    ``1..`` are ``EmbeddingPair.more`` (``[B,K-1,P]``, valid where ``more_valid``)."""
    more = query_valid is not None and query_valid.shape[1] > 1
    layers = [
        EmbeddingPair(
            layer[IMAGE_QUERY].semantic[:, 0],
            layer[query_key].semantic[:, 0],
            layer[OBJECT_PROPOSALS].semantic if OBJECT_PROPOSALS in layer else None,
            layer[query_key].semantic[:, 1:] if more else None,
        )
        for layer in out.layers
    ]
    more_valid = query_valid[:, 1:] if more else None
    if tokens is None:
        return RetrievalOutput(layers, more_valid=more_valid)
    first = tokens.valid if tokens.ids is None else tokens.valid & (tokens.ids == 0)
    return RetrievalOutput(layers, tokens.x, first, more_valid=more_valid)
