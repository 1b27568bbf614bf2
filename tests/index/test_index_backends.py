"""FindIndex over given embeddings: exact two-stage ranking, ANN kinds, FAISS = Milvus-lite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from findvl.index import AnnSettings, FaissBackend, FindIndex, QueryEmbedding
from findvl.index.scoring import normalize


def _gallery(count: int, dim: int = 16, objects: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, dim)).astype(np.float32)
    objs = rng.standard_normal((count, objects, dim)).astype(np.float32)
    return [f"img{i}.png" for i in range(count)], images, objs


def _queries(count: int, dim: int = 16, seed: int = 1) -> list[QueryEmbedding]:
    rng = np.random.default_rng(seed)
    return [
        QueryEmbedding(rng.standard_normal(dim), rng.standard_normal((i % 3, dim)))
        for i in range(count)
    ]


def test_search_with_every_candidate_is_the_brute_force_ranking() -> None:
    ids, images, objects = _gallery(40)
    index = FindIndex.from_embeddings(ids, images, objects)
    queries = _queries(6)
    queries[0].reference_ids = [ids[3]]
    brute = index.score_matrix(queries)
    for q, row in zip(queries, brute):
        hits = index.search_embedding(q, 10, candidates=len(ids))
        expected = np.lexsort((np.arange(len(row)), -row))[:10]
        assert [h.row for h in hits] == expected.tolist()
        assert [h.image for h in hits] == [ids[j] for j in expected]
        np.testing.assert_allclose([h.score for h in hits], row[expected], rtol=0, atol=1e-12)
    assert all(
        h.image != ids[3] or h.score < brute[0, 3] + 1e-6
        for h in index.search_embedding(queries[0])
    )


def test_entities_change_the_rerank_not_the_first_stage() -> None:
    ids, images, objects = _gallery(30)
    index = FindIndex.from_embeddings(ids, images, objects)
    target = 7
    query = QueryEmbedding(images[12], objects[target, :1] * 5)  # entity = an object of 7
    legend_only = index.search_embedding(QueryEmbedding(images[12], np.zeros((0, 16))), 1)
    assert legend_only[0].image == ids[12]
    ranked = index.search_embedding(query, 30, candidates=30)
    assert {h.image for h in ranked[:2]} >= {ids[target]} or ranked[0].image == ids[12]
    score = {h.image: h.score for h in ranked}
    assert score[ids[target]] > index.score_matrix([query], legend_only=True)[0, target]


def _clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    points = centres[rng.integers(0, 64, count)] + 0.3 * rng.standard_normal((count, dim))
    return normalize(points.astype(np.float32))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_kinds_find_the_exact_neighbours(kind, tmp_path) -> None:
    vectors = _clustered(4000, 32)
    queries = vectors[:50] + 0.05 * np.random.default_rng(2).standard_normal((50, 32))
    exact = FaissBackend(AnnSettings("flat"), 32)
    exact.sync(vectors)
    ann = FaissBackend(AnnSettings(kind, nlist=64, nprobe=16), 32)
    ann.sync(vectors)
    assert ann.kind == kind
    _, truth = exact.search(queries, 10)
    _, got = ann.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got)])
    assert recall >= 0.9
    ann.save(tmp_path)
    reopened = FaissBackend.load(tmp_path, AnnSettings(kind, nlist=64, nprobe=16), 32, mmap=True)
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], got)


def test_auto_is_exact_below_the_threshold_and_grows_into_ivf() -> None:
    settings = AnnSettings("auto", exact_below=500, nlist=16)
    backend = FaissBackend(settings, 32)
    vectors = _clustered(800, 32)
    backend.sync(vectors[:300])
    assert backend.kind == "flat" and backend.count == 300
    backend.sync(vectors)
    assert backend.kind == "ivf" and backend.count == 800
    with pytest.raises(ValueError, match="ann kind"):
        AnnSettings("annoy")


@pytest.fixture
def milvus_uri(tmp_path) -> Path:
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from milvus_lite.server_manager import server_manager_instance

    path = tmp_path / "milvus.db"
    yield path
    server_manager_instance.release_server(str(path))  # the embedded server stops


def test_faiss_and_milvus_lite_return_the_same_top_k(milvus_uri, tmp_path) -> None:
    from findvl.index.milvus import MilvusBackend

    ids, images, objects = _gallery(300, dim=24)
    vectors = normalize(images)
    faiss_backend = FaissBackend(AnnSettings("flat"), 24)
    faiss_backend.sync(vectors)
    milvus = MilvusBackend(str(milvus_uri), "findvl_test", AnnSettings("flat"), 24)
    milvus.sync(vectors[:200])
    milvus.sync(vectors)  # appending keeps the first rows
    assert milvus.count == 300
    queries = normalize(np.random.default_rng(5).standard_normal((8, 24)).astype(np.float32))
    f_scores, f_rows = faiss_backend.search(queries, 10)
    m_scores, m_rows = milvus.search(queries, 10)
    np.testing.assert_array_equal(m_rows, f_rows)
    np.testing.assert_allclose(m_scores, f_scores, atol=1e-5)
    milvus.close()
    reopened = MilvusBackend(str(milvus_uri), "findvl_test", AnnSettings("flat"), 24)
    assert reopened.count == 300 and reopened.kind == "flat"
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], f_rows)
    reopened.close()


def test_an_index_on_milvus_searches_like_one_on_faiss(milvus_uri, tmp_path) -> None:
    from findvl.index.manifest import ModelFingerprint

    ids, images, objects = _gallery(50, dim=24)
    fingerprint = ModelFingerprint("custom", "c", "w")
    on_faiss = FindIndex.create(fingerprint, tmp_path / "faiss", ann=AnnSettings("flat"))
    on_milvus = FindIndex.create(
        fingerprint, tmp_path / "milvus", ann=AnnSettings("flat"), milvus_uri=str(milvus_uri)
    )
    for index in (on_faiss, on_milvus):
        for start in range(0, 50, 20):
            rows = slice(start, start + 20)
            index.add_embeddings(ids[rows], images[rows], objects[rows])
        index.sync()
    queries = _queries(4, dim=24)
    reloaded = FindIndex.load(tmp_path / "milvus")
    for q in queries:
        expected = [h.image for h in on_faiss.search_embedding(q, 5, candidates=20)]
        assert [h.image for h in on_milvus.search_embedding(q, 5, candidates=20)] == expected
        assert [h.image for h in reloaded.search_embedding(q, 5, candidates=20)] == expected
    on_milvus.backend.close()
    reloaded.backend.close()
