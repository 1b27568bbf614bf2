"""The interleaved-retrieval score of FIND (query = legend + entities, gallery = images + objects).

``score(q, j) = cos(legend_q, image_j) + w * mean_e max_o cos(entity_{q,e}, object_{j,o})``
with the mean over the query's valid entities (0 when it has none) and the max over the gallery
image's valid objects. A query's own reference images (the images its visual entities were cut
from) get ``reference_penalty`` subtracted: the official evaluator uses 1e-6, which only
breaks ties; ``math.inf`` excludes them.
"""

from __future__ import annotations

import numpy as np

_CHUNK_ELEMENTS = 1 << 24


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def interleave_scores(
    legend: np.ndarray,
    images: np.ndarray,
    entities: np.ndarray,
    entity_mask: np.ndarray,
    objects: np.ndarray,
    object_mask: np.ndarray | None = None,
    *,
    weight: float = 0.5,
    references: np.ndarray | None = None,
    reference_penalty: float = 1e-6,
) -> np.ndarray:
    """Score every (interleaved query, gallery image) pair.

    Args:
        legend: ``[Q,D]`` query (legend) embeddings.
        images: ``[G,D]`` gallery image embeddings.
        entities: ``[Q,E,D]`` entity embeddings, padded.
        entity_mask: ``[Q,E]`` True for real entities.
        objects: ``[G,O,D]`` object embeddings of each gallery image.
        object_mask: ``[G,O]`` True for real objects (default: all); every image needs one.
        weight: ``w``, weight of the entity-object term.
        references: ``[Q,G]`` True where gallery image j is a reference image of query q.
        reference_penalty: subtracted from the scores of reference images.

    Returns:
        ``[Q,G]`` float64 scores.
    """
    num_queries, num_entities, dim = entities.shape
    num_gallery, num_objects, _ = objects.shape
    if legend.shape != (num_queries, dim) or images.shape != (num_gallery, dim):
        raise ValueError(
            f"shape mismatch: legend {legend.shape}, images {images.shape}, "
            f"entities {entities.shape}, objects {objects.shape}"
        )
    if entity_mask.shape != (num_queries, num_entities):
        raise ValueError(
            f"entity_mask: shape {entity_mask.shape}, expected {(num_queries, num_entities)}"
        )
    if object_mask is None:
        object_mask = np.ones((num_gallery, num_objects), bool)
    if object_mask.shape != (num_gallery, num_objects) or not object_mask.any(axis=1).all():
        raise ValueError("object_mask: expected [G,O] with at least one object per image")
    legend, images = _normalize(legend.astype(np.float64)), _normalize(images.astype(np.float64))
    ent = _normalize(entities.astype(np.float64))
    obj = _normalize(objects.astype(np.float64)).reshape(num_gallery * num_objects, dim)
    scores = legend @ images.T  # QxD @ DxG -> QxG
    counts = entity_mask.sum(axis=1)
    step = max(1, _CHUNK_ELEMENTS // max(1, num_entities * num_gallery * num_objects))
    for start in range(0, num_queries, step):
        stop = min(num_queries, start + step)
        # (q e) x (g o) -> q x e x g x o, max over objects
        sim = (ent[start:stop].reshape(-1, dim) @ obj.T).reshape(
            stop - start, num_entities, num_gallery, num_objects
        )
        best = np.where(object_mask[None, None], sim, -np.inf).max(axis=-1)  # q x e x g
        total = (best * entity_mask[start:stop, :, None]).sum(axis=1)  # q x g
        mean = np.divide(
            total,
            counts[start:stop, None],
            out=np.zeros_like(total),
            where=counts[start:stop, None] > 0,
        )
        scores[start:stop] += weight * mean
    if references is not None:
        if references.shape != scores.shape:
            raise ValueError(f"references: shape {references.shape}, expected {scores.shape}")
        scores = scores - np.where(references, reference_penalty, 0.0)
    return scores
