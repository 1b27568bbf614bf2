"""Interleaved retrieval score: vectorised version against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from findvl.metrics import interleave
from findvl.metrics.interleave import interleave_scores


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def loop_reference(
    legend, images, entities, entity_mask, objects, object_mask, weight, refs, penalty
):
    scores = np.zeros((len(legend), len(images)))
    for q in range(len(legend)):
        for j in range(len(images)):
            terms = [
                max(
                    cos(entities[q, e], objects[j, o])
                    for o in range(objects.shape[1])
                    if object_mask[j, o]
                )
                for e in range(entities.shape[1])
                if entity_mask[q, e]
            ]
            entity_term = sum(terms) / len(terms) if terms else 0.0
            scores[q, j] = cos(legend[q], images[j]) + weight * entity_term
            if refs[q, j]:
                scores[q, j] -= penalty
    return scores


@pytest.mark.parametrize("penalty", [1e-6, np.inf])
def test_matches_loop_reference(penalty, monkeypatch):
    monkeypatch.setattr(interleave, "_CHUNK_ELEMENTS", 200)  # force several query chunks
    rng = np.random.default_rng(0)
    q, g, e, o, d = 7, 5, 3, 4, 6
    legend, images = rng.normal(size=(q, d)), rng.normal(size=(g, d))
    entities, objects = rng.normal(size=(q, e, d)), rng.normal(size=(g, o, d))
    entity_mask = rng.random((q, e)) < 0.7
    entity_mask[0] = False  # a query without entities: legend term only
    object_mask = rng.random((g, o)) < 0.7
    object_mask[:, 0] = True
    refs = rng.random((q, g)) < 0.2
    got = interleave_scores(
        legend,
        images,
        entities,
        entity_mask,
        objects,
        object_mask,
        weight=0.5,
        references=refs,
        reference_penalty=penalty,
    )
    expected = loop_reference(
        legend, images, entities, entity_mask, objects, object_mask, 0.5, refs, penalty
    )
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(got)) and (~finite).sum() == (
        refs.sum() if penalty == np.inf else 0
    )
    np.testing.assert_allclose(got[finite], expected[finite], atol=1e-12)


def test_shape_errors():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="entity_mask"):
        interleave_scores(
            rng.normal(size=(2, 4)),
            rng.normal(size=(3, 4)),
            rng.normal(size=(2, 5, 4)),
            np.ones((2, 4), bool),
            rng.normal(size=(3, 6, 4)),
        )
    with pytest.raises(ValueError, match="object_mask"):
        interleave_scores(
            rng.normal(size=(2, 4)),
            rng.normal(size=(3, 4)),
            rng.normal(size=(2, 5, 4)),
            np.ones((2, 5), bool),
            rng.normal(size=(3, 6, 4)),
            np.zeros((3, 6), bool),
        )
