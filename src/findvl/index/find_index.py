"""FindIndex: an image collection searched with interleaved queries in two stages.

1. ANN: the query's legend against the normalised image embeddings (FAISS or Milvus);
2. rerank: the top ``candidates`` get the full interleave score (image term + entity↔object
   term, :mod:`findvl.index.scoring`), ties broken by gallery order as the evaluator does.

With ``candidates >= len(index)`` and an exact first stage the ranking is the brute-force one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from findvl.index.backends import AnnBackend, AnnSettings, FaissBackend
from findvl.index.manifest import IndexManifest, ModelFingerprint
from findvl.index.scoring import REFERENCE_PENALTY, QueryEmbedding, normalize, rerank_scores
from findvl.index.store import EmbeddingStore, Shard

#: Candidates reranked per query by default (at least ``k``).
DEFAULT_CANDIDATES = 100


@dataclass(frozen=True)
class SearchHit:
    """One ranked image: ``image`` (gallery id), full ``score``, its ``row`` in the index and
    the first-stage ``image_score`` (cosine of legend and image)."""

    image: str
    score: float
    row: int
    image_score: float


def _settings(ann: dict) -> AnnSettings:
    keys = AnnSettings.__dataclass_fields__
    return AnnSettings(**{k: v for k, v in ann.items() if k in keys})


class FindIndex:
    """Image and object embeddings of a collection, an ANN first stage and a rerank.

    Build one with :meth:`create` (empty, on disk or in memory), :meth:`from_embeddings`, or
    :func:`findvl.index.build.build_index` (a folder of images); reopen with :meth:`load`.

    Args:
        manifest: model fingerprint, dimensions, settings.
        store: the embeddings.
        backend: the first stage.
        root: the index directory (None: in memory).
        model: the model that embeds queries and images (needed by :meth:`search` with text
            and by :meth:`add`; not by :meth:`search_embedding`).
    """

    def __init__(
        self,
        *,
        manifest: IndexManifest,
        store: EmbeddingStore,
        backend: AnnBackend | None,
        root: Path | None = None,
        model=None,
    ) -> None:
        self.manifest, self.store, self.backend = manifest, store, backend
        self.root, self.model = root, model

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        fingerprint: ModelFingerprint,
        root: str | Path | None = None,
        *,
        ann: AnnSettings | None = None,
        milvus_uri: str | None = None,
        batch_size: int = 8,
        collection: str = "",
        model=None,
    ) -> FindIndex:
        """An empty index (``root``: its directory, created; None: in memory)."""
        ann = ann or AnnSettings()
        ann_desc = {"backend": "faiss" if milvus_uri is None else "milvus", **asdict(ann)}
        if milvus_uri is not None:
            ann_desc |= {"uri": milvus_uri, "collection": _collection_name(root)}
        manifest = IndexManifest(fingerprint, batch_size=batch_size, ann=ann_desc)
        manifest.collection = collection
        root = None if root is None else Path(root)
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            manifest.save(root)
        return cls(
            manifest=manifest, store=EmbeddingStore(root), backend=None, root=root, model=model
        )

    @classmethod
    def from_embeddings(
        cls,
        ids: Sequence,
        images: np.ndarray,
        objects: np.ndarray | None = None,
        *,
        ann: AnnSettings | None = None,
    ) -> FindIndex:
        """An in-memory index over given embeddings (``images [G,P]``, ``objects [G,N,P]``;
        without objects each image stands for its own single object)."""
        images = np.asarray(images, np.float32)
        objects = images[:, None] if objects is None else np.asarray(objects, np.float32)
        index = cls.create(ModelFingerprint("custom", "", ""), ann=ann or AnnSettings("flat"))
        index.add_embeddings([str(i) for i in ids], images, objects)
        index.sync()
        return index

    @classmethod
    def build(
        cls,
        model,
        images_dir: str | Path,
        root: str | Path | None = None,
        *,
        fingerprint: ModelFingerprint | None = None,
        batch_size: int = 8,
        ann: AnnSettings | None = None,
        milvus_uri: str | None = None,
        progress: bool = False,
    ) -> FindIndex:
        """Embed every image under ``images_dir`` into a new index (``root``: on disk)."""
        from findvl.index.build import build_index

        index = cls.create(
            fingerprint or ModelFingerprint.of_model(model),
            root,
            ann=ann,
            milvus_uri=milvus_uri,
            batch_size=batch_size,
            collection=str(Path(images_dir).resolve()),
            model=model,
        )
        build_index(index, images_dir, progress=progress)
        return index

    def save(self, root: str | Path) -> FindIndex:
        """Write an in-memory index to the directory ``root``; the saved index (on disk)."""
        root = Path(root)
        if self.root is not None and root.resolve() == self.root.resolve():
            self.sync()
            return self
        if (root / "manifest.json").exists():
            raise FileExistsError(f"{root}: already holds an index")
        saved = FindIndex.create(self.manifest.model, root, model=self.model)
        saved.manifest.ann, saved.manifest.batch_size = self.manifest.ann, self.manifest.batch_size
        saved.manifest.collection = self.manifest.collection
        for shard in self.store.shards:
            saved.store.append(shard)
        saved.sync()
        return saved

    @classmethod
    def load(
        cls,
        root: str | Path,
        *,
        model=None,
        fingerprint: ModelFingerprint | None = None,
        mmap: bool = True,
    ) -> FindIndex:
        """Reopen an index directory; ``fingerprint`` (of the model that will embed queries or
        images) must match the manifest's, else ``ValueError`` with the reason."""
        root = Path(root)
        manifest = IndexManifest.load(root)
        if fingerprint is not None:
            why = manifest.model.mismatch(fingerprint)
            if why is not None:
                raise ValueError(f"{root}: checkpoint does not match the index: {why}")
        store = EmbeddingStore.open(root)
        index = cls(manifest=manifest, store=store, backend=None, root=root, model=model)
        if store.dims is not None:
            index.backend = index._open_backend(store.dims[0], mmap=mmap)
        return index

    def _open_backend(self, dim: int, *, mmap: bool) -> AnnBackend:
        desc, settings = self.manifest.ann, _settings(self.manifest.ann)
        if desc.get("backend") == "milvus":
            from findvl.index.milvus import MilvusBackend

            return MilvusBackend(desc["uri"], desc["collection"], settings, dim)
        if self.root is None:
            return FaissBackend(settings, dim)
        return FaissBackend.load(self.root, settings, dim, mmap=mmap)

    # ---- adding -------------------------------------------------------------------------
    def add_embeddings(
        self,
        ids: Sequence[str],
        images: np.ndarray,
        objects: np.ndarray,
        skipped: Sequence[dict] = (),
    ) -> None:
        """Append one batch (``images [B,P]``, ``objects [B,N,P]``); :meth:`sync` indexes it."""
        repeated = [i for i in ids if i in self.store]
        if repeated or len(set(ids)) != len(ids):
            raise ValueError(f"add: image ids already in the index: {repeated[:3] or list(ids)}")
        self.store.append(Shard(list(ids), images, objects, list(skipped)))

    def add(self, images: Sequence, ids: Sequence[str]) -> None:
        """Embed ``images`` (``[3,H,W]`` RGB tensors) with :attr:`model` and append them."""
        from findvl.index.embed import embed_images

        if self.model is None:
            raise ValueError("add: the index has no model (load it with model=...)")
        image_emb, objects = embed_images(self.model, list(images))
        self.add_embeddings(ids, image_emb, objects)

    def sync(self) -> None:
        """Index every stored row in the first stage and save the manifest and backend."""
        dims = self.store.dims
        self.manifest.num_images = len(self.store)
        self.manifest.num_skipped = len(self.store.skipped)
        if dims is None:  # nothing readable yet
            if self.root is not None:
                self.manifest.save(self.root)
            return
        self.manifest.dim, self.manifest.objects = dims
        if self.backend is None:
            self.backend = self._open_backend(dims[0], mmap=False)
        self.backend.sync(self.store.images())
        if self.root is not None:
            self.backend.save(self.root)
            self.manifest.save(self.root)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def ids(self) -> list[str]:
        return self.store.ids

    # ---- searching ----------------------------------------------------------------------
    def embed_query(
        self, query: str, refs: Mapping[int, object] | None = None, *, seed: int = 0
    ) -> QueryEmbedding:
        """Markup ``query`` (+ visual references by entity id) -> :class:`QueryEmbedding`."""
        from findvl.index.embed import embed_query, query_from_markup

        if self.model is None:
            raise ValueError("search: the index has no model to embed the query (model=...)")
        return embed_query(self.model, query_from_markup(query, refs), seed=seed)

    def search(
        self,
        query: str | QueryEmbedding,
        refs: Mapping[int, object] | None = None,
        k: int = 10,
        *,
        candidates: int | None = None,
    ) -> list[SearchHit]:
        """The top ``k`` images for a markup query (``refs``: entity id -> VisualReference)."""
        if not isinstance(query, QueryEmbedding):
            query = self.embed_query(query, refs)
        return self.search_embedding(query, k, candidates=candidates)

    def search_embedding(
        self, query: QueryEmbedding, k: int = 10, *, candidates: int | None = None
    ) -> list[SearchHit]:
        """ANN top ``candidates`` (default ``max(k, 100)``), reranked; the best ``k``."""
        if k < 1:
            raise ValueError(f"k: must be positive, got {k}")
        if len(self) == 0 or self.backend is None:
            return []
        c = min(len(self), max(k, candidates or DEFAULT_CANDIDATES))
        first, rows = self.backend.search(normalize(query.legend[None]), c)
        keep = rows[0] >= 0
        rows, first = rows[0][keep], first[0][keep]
        ids = self.store.ids
        references = None
        if query.reference_ids:
            references = np.isin([ids[r] for r in rows], list(query.reference_ids))[None]
        scores = rerank_scores(
            [query], self.store.images()[rows], self.store.objects(rows), references=references
        )[0]
        order = np.lexsort((rows, -scores))[:k]  # by score, ties by gallery order
        return [
            SearchHit(ids[rows[i]], float(scores[i]), int(rows[i]), float(first[i])) for i in order
        ]

    def score_matrix(
        self, queries: list[QueryEmbedding], *, legend_only: bool = False
    ) -> np.ndarray:
        """Exact ``[Q,G]`` full interleave scores against every image (the brute-force rerank
        of the whole collection; queries' reference ids get the official penalty)."""
        position = {g: j for j, g in enumerate(self.store.ids)}
        references = np.zeros((len(queries), len(self)), bool)
        for i, q in enumerate(queries):
            references[i, [position[r] for r in q.reference_ids if r in position]] = True
        if legend_only:
            queries = [QueryEmbedding(q.legend, q.entities[:0], q.text) for q in queries]
        return rerank_scores(
            queries,
            self.store.images(),
            self.store.all_objects(),
            references=references,
            reference_penalty=0.0 if legend_only else REFERENCE_PENALTY,
        )

    def image_scores(self, legends: np.ndarray) -> np.ndarray:
        """``[Q,G]`` float32 cosines of ``legends [Q,P]`` with every image (caption search)."""
        return normalize(legends) @ normalize(self.store.images()).T


def _collection_name(root: str | Path | None) -> str:
    import hashlib

    key = str(Path(root).resolve()) if root is not None else "memory"
    return "findvl_" + hashlib.sha256(key.encode()).hexdigest()[:16]
