"""Retrieval recall@K from a score matrix, with a deterministic tie rule.

Input: ``scores[Q,G]`` (query x gallery, higher is better) and, per query, its relevant gallery
items. The rank of a gallery item ``j`` for query ``q`` is its position in the gallery sorted by
decreasing score, ties broken by gallery index::

    rank(q, j) = 1 + #{k : s[q,k] > s[q,j]} + #{k < j : s[q,k] == s[q,j]}

A query's rank is the best rank among its relevant items; ``R@K`` is the fraction of queries
with rank <= K. For caption x image scores, the forward direction is image retrieval (IR, each
caption retrieves its image) and the transpose gives text retrieval (TR, each image retrieves
any of its captions; images with no caption are left out of TR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from findvl.jsonio import load_json
from findvl.metrics.io import expect_type, percent

KS = (1, 5, 10)
_CHUNK_ELEMENTS = 1 << 24  # rows per chunk * gallery size stays below this


@dataclass(frozen=True)
class RetrievalMetrics:
    """``recall`` in percent: ``IR@K`` (queries -> gallery) and ``TR@K`` (transpose) entries."""

    recall: dict[str, float] = field(default_factory=dict)
    num_queries: int = 0
    num_gallery: int = 0
    num_tr_queries: int = 0  # gallery items with at least one relevant query

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.recall,
            "num_queries": self.num_queries,
            "num_gallery": self.num_gallery,
            "num_tr_queries": self.num_tr_queries,
        }


def best_ranks(
    scores: np.ndarray, query_index: np.ndarray, gallery_index: np.ndarray
) -> np.ndarray:
    """1-based rank of each query's best relevant gallery item under the tie rule above.

    Args:
        scores: ``[Q,G]`` float scores without NaN.
        query_index / gallery_index: ``[M]`` relevant (query, gallery) pairs; every query needs one.

    Returns:
        ``[Q]`` int64 ranks.
    """
    num_queries, num_gallery = scores.shape
    if np.bincount(query_index, minlength=num_queries).min(initial=1) == 0:
        raise ValueError("every query needs at least one relevant gallery item")
    order = np.argsort(query_index, kind="stable")
    query_index, gallery_index = query_index[order], gallery_index[order]
    bounds = np.searchsorted(query_index, np.arange(num_queries + 1))
    ranks = np.empty(num_queries, np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, num_gallery))
    positions = np.arange(num_gallery)
    for start in range(0, num_queries, step):
        stop = min(num_queries, start + step)
        block = scores[start:stop]
        relevant = np.zeros(block.shape, bool)
        lo, hi = bounds[start], bounds[stop]
        relevant[query_index[lo:hi] - start, gallery_index[lo:hi]] = True
        best = np.where(relevant, block, -np.inf).max(axis=1, keepdims=True)
        tied = block == best
        first = np.argmax(relevant & tied, axis=1)[:, None]  # smallest relevant index at best
        higher = (block > best).sum(axis=1)
        ranks[start:stop] = 1 + higher + (tied & (positions[None, :] < first)).sum(axis=1)
    return ranks


def recall_at(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[int, float]:
    """``{K: fraction of ranks <= K}``."""
    return {k: float((ranks <= k).mean()) if ranks.size else 0.0 for k in ks}


def retrieval_metrics(
    scores: np.ndarray,
    query_index: np.ndarray,
    gallery_index: np.ndarray,
    *,
    text_retrieval: bool = True,
) -> RetrievalMetrics:
    """IR@K over queries and, if ``text_retrieval``, TR@K over the transposed matrix.

    Args:
        scores: ``[Q,G]`` caption x image (or query x gallery) scores.
        query_index / gallery_index: ``[M]`` relevant pairs.
        text_retrieval: also rank queries for each gallery item that has a relevant query.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or not np.issubdtype(scores.dtype, np.number):
        raise ValueError(f"scores: expected a 2-D numeric array, got {scores.dtype} {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores: contains NaN")
    recall = {
        f"IR@{k}": percent(v)
        for k, v in recall_at(best_ranks(scores, query_index, gallery_index)).items()
    }
    num_tr = 0
    if text_retrieval:
        has_query = np.zeros(scores.shape[1], bool)
        has_query[gallery_index] = True
        remap = np.cumsum(has_query) - 1
        num_tr = int(has_query.sum())
        ranks = best_ranks(scores.T[has_query], remap[gallery_index], query_index)
        recall.update({f"TR@{k}": percent(v) for k, v in recall_at(ranks).items()})
    return RetrievalMetrics(recall, scores.shape[0], scores.shape[1], num_tr)


def _array(data: Any, key: str, name: str) -> np.ndarray:
    if key not in data:
        raise ValueError(f"{name}: missing array {key!r}")
    try:
        return data[key]
    except ValueError as error:  # object arrays need pickle, which is never allowed
        raise ValueError(f"{name}: array {key!r}: {error}") from None


def _ids(data: Any, key: str, name: str) -> list[str]:
    ids = _array(data, key, name)
    if ids.ndim != 1 or ids.dtype.kind not in "iuU":
        raise ValueError(f"{name}: array {key!r}: expected 1-D int or str ids, got {ids.dtype}")
    out = [str(v) for v in ids.tolist()]
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: array {key!r}: ids are not unique")
    return out


def load_retrieval(
    scores_path: str | Path, gt_path: str | Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the npz (``scores``, ``query_ids``, ``gallery_ids``) and the relevance JSON.

    Returns:
        ``scores[Q,G]`` and the relevant pairs ``query_index[M]``, ``gallery_index[M]``.
    """
    scores_path, gt_path = Path(scores_path), Path(gt_path)
    if not scores_path.is_file():
        raise FileNotFoundError(f"{scores_path}: no such file")
    try:
        with np.load(scores_path, allow_pickle=False) as data:
            scores = _array(data, "scores", scores_path.name)
            query_ids = _ids(data, "query_ids", scores_path.name)
            gallery_ids = _ids(data, "gallery_ids", scores_path.name)
    except (OSError, EOFError) as error:
        raise ValueError(f"{scores_path.name}: not a readable .npz ({error})") from None
    if scores.shape != (len(query_ids), len(gallery_ids)):
        raise ValueError(
            f"{scores_path.name}: array 'scores' has shape {scores.shape}, expected "
            f"({len(query_ids)}, {len(gallery_ids)}) from the id arrays"
        )
    relevance = expect_type(load_json(gt_path), dict, gt_path.name)
    gallery_pos = {g: j for j, g in enumerate(gallery_ids)}
    pairs = []
    for i, query in enumerate(query_ids):
        if query not in relevance:
            raise ValueError(f"{gt_path.name}: no entry for query id {query!r}")
        items = expect_type(relevance[query], list, f"{gt_path.name}: [{query!r}]")
        if not items:
            raise ValueError(f"{gt_path.name}: [{query!r}]: empty list of relevant ids")
        for item in items:
            expect_type(item, (int, str), f"{gt_path.name}: [{query!r}]")
            if str(item) not in gallery_pos:
                raise ValueError(
                    f"{gt_path.name}: [{query!r}]: gallery id {item!r} not in {scores_path.name}"
                )
            pairs.append((i, gallery_pos[str(item)]))
    index = np.array(pairs, np.int64).reshape(-1, 2)
    return scores, index[:, 0], index[:, 1]


def evaluate_retrieval(
    scores_path: str | Path, gt_path: str | Path, *, text_retrieval: bool = True
) -> RetrievalMetrics:
    """IR@K (and TR@K) of a score file against its relevance file."""
    scores, query_index, gallery_index = load_retrieval(scores_path, gt_path)
    return retrieval_metrics(scores, query_index, gallery_index, text_retrieval=text_retrieval)
