"""The scores an index ranks by: the image term for the ANN stage, the full interleave score
for the rerank.

``score(q, j) = cos(legend_q, image_j) + w * mean_e max_o cos(entity_{q,e}, object_{j,o})``
(:func:`findvl.metrics.interleave.interleave_scores`, the official evaluator's score). The first
term alone is an inner product of normalised vectors, which an ANN index searches; the second
needs the candidate's object embeddings and is computed for the top candidates only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from findvl.metrics.interleave import interleave_scores

#: ``w``: weight of the entity-object term, as the official evaluator.
ENTITY_WEIGHT = 0.5
#: Subtracted from a query's own reference images (the official tie-breaker).
REFERENCE_PENALTY = 1e-6


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in float32 (``[...,D] -> [...,D]``); zero rows stay zero."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class QueryEmbedding:
    """What a query contributes to the score.

    Attributes:
        legend: ``[P]`` the query (legend) embedding, compared with image embeddings.
        entities: ``[E,P]`` entity embeddings (``E`` may be 0), compared with objects.
        text: the query's plain text (for display).
        reference_ids: gallery ids the query's visual references were cut from (they get
            :data:`REFERENCE_PENALTY`).
    """

    legend: np.ndarray
    entities: np.ndarray
    text: str = ""
    reference_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.legend = np.asarray(self.legend, np.float32).reshape(-1)
        dim = self.legend.shape[0]
        self.entities = np.asarray(self.entities, np.float32).reshape(-1, dim)


def stack_queries(queries: list[QueryEmbedding]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries -> ``legend [Q,P]``, padded ``entities [Q,E,P]`` and ``entity_mask [Q,E]``."""
    dim = queries[0].legend.shape[0]
    width = max(1, max(q.entities.shape[0] for q in queries))
    entities = np.zeros((len(queries), width, dim), np.float32)
    mask = np.zeros((len(queries), width), bool)
    for i, q in enumerate(queries):
        entities[i, : q.entities.shape[0]] = q.entities
        mask[i, : q.entities.shape[0]] = True
    return np.stack([q.legend for q in queries]), entities, mask


def rerank_scores(
    queries: list[QueryEmbedding],
    images: np.ndarray,
    objects: np.ndarray,
    *,
    references: np.ndarray | None = None,
    weight: float = ENTITY_WEIGHT,
    reference_penalty: float = REFERENCE_PENALTY,
) -> np.ndarray:
    """Full interleave scores of queries against gallery items.

    Args:
        queries: ``Q`` queries.
        images: ``[G,P]`` raw (unnormalised) image embeddings of the items.
        objects: ``[G,N,P]`` raw object embeddings of the items.
        references: ``[Q,G]`` True where item j is a reference image of query q.

    Returns:
        ``[Q,G]`` float64 scores.
    """
    legend, entities, mask = stack_queries(queries)
    return interleave_scores(
        legend,
        np.asarray(images, np.float32),
        entities,
        mask,
        np.asarray(objects, np.float32),
        weight=weight,
        references=references,
        reference_penalty=reference_penalty,
    )
