"""ANN backends over the normalised image embeddings (inner product = cosine).

A backend holds rows ``0..count-1`` of the gallery in order; :meth:`sync` adds the rows it
does not hold yet (or rebuilds when the collection outgrew its kind). Two implementations:
:class:`FaissBackend` (embedded, files in the index directory, memory-mapped when loaded) and
:class:`findvl.index.milvus.MilvusBackend` (a Milvus collection: milvus-lite file or server).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from findvl.index.scoring import normalize

ANN_DIR = "ann"
#: Rows normalised and added at a time (bounds the extra memory of a sync).
ADD_ROWS = 65536
KINDS = ("auto", "flat", "ivf", "hnsw")


@dataclass(frozen=True)
class AnnSettings:
    """How the first stage searches.

    Attributes:
        kind: ``flat`` (exact), ``ivf`` (inverted lists), ``hnsw`` (graph) or ``auto``: exact
            below ``exact_below`` images, IVF above (it builds in seconds where HNSW takes
            minutes on two cores, and memory-maps).
        exact_below: collection size from which ``auto`` stops being exact.
        nlist: IVF lists; None: ``sqrt(G)`` rounded to a power of two (1024 at 1M).
        nprobe: IVF lists visited per query (recall against speed).
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth.
        train_per_list: IVF training vectors per list (sampled with a fixed seed).
    """

    kind: str = "auto"
    exact_below: int = 50_000
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    train_per_list: int = 40

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ann kind {self.kind!r}: expected one of {KINDS}")
        for name in ("exact_below", "nprobe", "hnsw_m", "ef_search", "train_per_list"):
            if getattr(self, name) < 1:
                raise ValueError(f"ann {name}: must be positive, got {getattr(self, name)}")

    def resolve(self, size: int) -> str:
        """The kind used for a collection of ``size`` images."""
        if self.kind != "auto":
            return self.kind
        return "flat" if size < self.exact_below else "ivf"

    def lists(self, size: int) -> int:
        if self.nlist is not None:
            return self.nlist
        return int(2 ** round(np.log2(max(1.0, np.sqrt(size)))))


class AnnBackend(Protocol):
    """What :class:`~findvl.index.find_index.FindIndex` needs from a first stage."""

    count: int

    def sync(self, vectors: np.ndarray) -> None:
        """Hold rows ``vectors [G,P]`` (raw embeddings, normalised here block by block); rows
        below :attr:`count` are unchanged."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries [Q,P]`` -> scores ``[Q,k]`` and rows ``[Q,k]`` (-1 past the end)."""

    def save(self, root: Path) -> None:
        """Persist what the backend needs to reopen from ``root``."""

    def describe(self) -> dict:
        """JSON-able settings (kept in the manifest)."""


class FaissBackend:
    """FAISS index in ``INDEX/ann/faiss.index`` (+ ``ann.json``).

    Args:
        settings: kind and search parameters.
        dim: embedding size ``P``.
    """

    def __init__(self, settings: AnnSettings, dim: int) -> None:
        self.settings = settings
        self.dim = dim
        self.kind: str | None = None
        self.index = None
        self.count = 0

    def _new(self, kind: str, vectors: np.ndarray):
        import faiss

        s = self.settings
        if kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, s.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 2 * s.hnsw_m
            return index
        nlist = min(s.lists(len(vectors)), max(1, len(vectors)))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = min(len(vectors), nlist * s.train_per_list)
        rows = np.random.default_rng(0).choice(len(vectors), sample, replace=False)
        index.train(normalize(vectors[np.sort(rows)]))
        return index

    def sync(self, vectors: np.ndarray) -> None:
        kind = self.settings.resolve(len(vectors))
        if self.index is None or kind != self.kind or self.count > len(vectors):
            self.index, self.kind, self.count = self._new(kind, vectors), kind, 0
        for start in range(self.count, len(vectors), ADD_ROWS):
            self.index.add(normalize(vectors[start : start + ADD_ROWS]))
        self.count = len(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dim)
        if self.index is None or self.count == 0:
            empty = np.zeros((len(queries), k))
            return empty, np.full((len(queries), k), -1, np.int64)
        if self.kind == "ivf":
            self.index.nprobe = self.settings.nprobe
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.settings.ef_search, k)
        scores, rows = self.index.search(queries, k)
        return scores, rows.astype(np.int64)

    def save(self, root: Path) -> None:
        import faiss

        folder = Path(root) / ANN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        if self.index is not None:
            tmp = folder / "faiss.index.tmp"
            faiss.write_index(self.index, str(tmp))
            tmp.replace(folder / "faiss.index")
        meta = {"kind": self.kind, "count": self.count, "dim": self.dim}
        tmp_meta = folder / "ann.json.tmp"
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        tmp_meta.replace(folder / "ann.json")

    @classmethod
    def load(cls, root: Path, settings: AnnSettings, dim: int, *, mmap: bool) -> FaissBackend:
        """Reopen a saved index (``mmap``: read-only, memory-mapped; for searching)."""
        import faiss

        backend = cls(settings, dim)
        folder = Path(root) / ANN_DIR
        meta_path, index_path = folder / "ann.json", folder / "faiss.index"
        if not (meta_path.is_file() and index_path.is_file()):
            return backend
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(index_path), flags)
        if index.ntotal != meta["count"] or index.d != dim:
            return backend  # out of step with its metadata: rebuilt by the next sync
        backend.index, backend.kind, backend.count = index, meta["kind"], meta["count"]
        return backend

    def describe(self) -> dict:
        return {"backend": "faiss", **asdict(self.settings)}
