"""Retrieval recall@K against a brute-force reference, ties included; file reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from findvl.metrics.retrieval import best_ranks, evaluate_retrieval, retrieval_metrics


def brute_force_ranks(scores: np.ndarray, relevant: list[set[int]]) -> list[int]:
    ranks = []
    for q, row in enumerate(scores):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))  # ties: smaller index first
        ranks.append(1 + min(order.index(j) for j in relevant[q]))
    return ranks


def pairs_of(relevant: list[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(q, j) for q, items in enumerate(relevant) for j in sorted(items)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_equal_brute_force_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(40, 30)).astype(np.float32)  # coarse: ties everywhere
    relevant = [
        set(rng.choice(30, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(40)
    ]
    query_index, gallery_index = pairs_of(relevant)
    assert best_ranks(scores, query_index, gallery_index).tolist() == brute_force_ranks(
        scores, relevant
    )


def test_tie_rule_by_hand():
    scores = np.array([[0.5, 0.9, 0.5, 0.5]])
    assert best_ranks(scores, np.array([0]), np.array([2])).tolist() == [3]  # behind 1 and 0
    assert best_ranks(scores, np.array([0, 0]), np.array([3, 0])).tolist() == [2]


def test_image_and_text_recall_equal_brute_force():
    rng = np.random.default_rng(3)
    num_images, captions_per_image = 12, 3
    image_of_caption = np.repeat(np.arange(num_images), captions_per_image)
    scores = np.round(rng.normal(size=(len(image_of_caption), num_images)), 1)
    result = retrieval_metrics(scores, np.arange(len(image_of_caption)), image_of_caption)
    ir = np.array(brute_force_ranks(scores, [{int(i)} for i in image_of_caption]))
    captions_of = [set(np.nonzero(image_of_caption == i)[0].tolist()) for i in range(num_images)]
    tr = np.array(brute_force_ranks(scores.T, captions_of))
    for k in (1, 5, 10):
        assert result.recall[f"IR@{k}"] == pytest.approx(100 * np.mean(ir <= k))
        assert result.recall[f"TR@{k}"] == pytest.approx(100 * np.mean(tr <= k))
    assert result.num_tr_queries == num_images


def test_files_and_errors(tmp_path):
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.7]])
    npz = tmp_path / "scores.npz"
    np.savez(
        npz, scores=scores, query_ids=np.array(["c1", "c2", "c3"]), gallery_ids=np.array([10, 20])
    )
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"c1": [10], "c2": [20], "c3": [20]}))
    result = evaluate_retrieval(npz, gt)
    assert result.recall["IR@1"] == pytest.approx(200 / 3)  # c3 ranks image 20 second
    assert result.recall["TR@1"] == pytest.approx(100.0)  # 10 -> c1, 20 -> c3 (0.7 > 0.3)
    assert "TR@1" not in evaluate_retrieval(npz, gt, text_retrieval=False).recall
    gt.write_text(json.dumps({"c1": [10], "c2": [20]}))
    with pytest.raises(ValueError, match=r"gt\.json: no entry for query id 'c3'"):
        evaluate_retrieval(npz, gt)
    gt.write_text(json.dumps({"c1": [10], "c2": [30], "c3": [20]}))
    with pytest.raises(ValueError, match=r"gt\.json: \['c2'\]: gallery id 30 not in scores\.npz"):
        evaluate_retrieval(npz, gt)
    np.savez(
        npz,
        scores=scores,
        query_ids=np.array(["c1", "c2", "c3"]),
        gallery_ids=np.array([{"a": 1}, 2], dtype=object),
    )
    with pytest.raises(ValueError, match=r"scores\.npz"):
        evaluate_retrieval(npz, gt)
    np.savez(
        npz,
        scores=scores[:2],
        query_ids=np.array(["c1", "c2", "c3"]),
        gallery_ids=np.array([10, 20]),
    )
    with pytest.raises(ValueError, match=r"scores\.npz: array 'scores' has shape \(2, 2\)"):
        evaluate_retrieval(npz, gt)
