"""The first stage on Milvus: image embeddings in a collection, searched by inner product.

``uri`` is a Milvus server (``http://host:19530``, a cluster's proxy) or a local file
(``something.db``), which pymilvus serves with the embedded milvus-lite. The collection holds
one row per gallery image (``row``: its position in the index, ``vector``: the normalised image
embedding); object embeddings for the rerank stay in the index directory's shards. Needs the
optional ``pymilvus`` package (and ``milvus-lite`` for local files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from findvl.index.backends import AnnSettings
from findvl.index.scoring import normalize

#: Milvus index types for each kind (``auto`` resolves as for FAISS).
MILVUS_INDEX = {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW"}
INSERT_ROWS = 4096


class MilvusBackend:
    """ANN stage in a Milvus collection.

    Args:
        uri: server URI or milvus-lite file.
        collection: collection name.
        settings: kind and search parameters (as :class:`AnnSettings`).
        dim: embedding size ``P``.
    """

    def __init__(self, uri: str, collection: str, settings: AnnSettings, dim: int) -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError as error:
            raise ValueError(
                "--backend milvus: needs the pymilvus package (pip install pymilvus milvus-lite)"
            ) from error
        self.uri, self.collection, self.settings, self.dim = uri, collection, settings, dim
        self.client = MilvusClient(uri)
        self.kind: str | None = None
        self.count = 0
        if self.client.has_collection(collection):
            stats = self.client.get_collection_stats(collection)
            self.count = int(stats.get("row_count", 0))
            desc = self.client.describe_index(collection, "vector") or {}
            kinds = {v: k for k, v in MILVUS_INDEX.items()}
            self.kind = kinds.get(desc.get("index_type"))

    def _create(self, kind: str, size: int) -> None:
        from pymilvus import DataType

        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        extra = {}
        if kind == "ivf":
            extra = {"nlist": self.settings.lists(size)}
        elif kind == "hnsw":
            extra = {"M": self.settings.hnsw_m, "efConstruction": 2 * self.settings.hnsw_m}
        params.add_index(
            field_name="vector", index_type=MILVUS_INDEX[kind], metric_type="IP", params=extra
        )
        self.client.create_collection(self.collection, schema=schema, index_params=params)
        self.kind, self.count = kind, 0

    def sync(self, vectors: np.ndarray) -> None:
        kind = self.settings.resolve(len(vectors))
        if self.kind != kind or self.count > len(vectors):
            self._create(kind, len(vectors))
        for start in range(self.count, len(vectors), INSERT_ROWS):
            block = normalize(vectors[start : start + INSERT_ROWS])
            rows = [{"row": start + i, "vector": v.tolist()} for i, v in enumerate(block)]
            self.client.insert(self.collection, rows)
        if len(vectors) > self.count:
            self.client.flush(self.collection)
            self.count = len(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        scores = np.zeros((len(queries), k))
        rows = np.full((len(queries), k), -1, np.int64)
        if self.count == 0:
            return scores, rows
        params = {"metric_type": "IP", "params": {}}
        if self.kind == "ivf":
            params["params"] = {"nprobe": self.settings.nprobe}
        elif self.kind == "hnsw":
            params["params"] = {"ef": max(self.settings.ef_search, k)}
        hits = self.client.search(
            self.collection,
            data=[q.tolist() for q in queries],
            limit=min(k, self.count),
            output_fields=["row"],
            search_params=params,
        )
        for i, row_hits in enumerate(hits):
            for j, hit in enumerate(row_hits):
                rows[i, j], scores[i, j] = int(hit["entity"]["row"]), float(hit["distance"])
        return scores, rows

    def save(self, root: Path) -> None:
        """Nothing to write: the collection is the state (flushed by :meth:`sync`)."""

    def close(self) -> None:
        self.client.close()

    def describe(self) -> dict:
        from dataclasses import asdict

        return {
            "backend": "milvus",
            "uri": self.uri,
            "collection": self.collection,
            **asdict(self.settings),
        }
