"""Search image collections with interleaved queries: :class:`FindIndex` and its backends."""

from findvl.index.backends import AnnSettings, FaissBackend
from findvl.index.find_index import FindIndex, SearchHit
from findvl.index.manifest import IndexManifest, ModelFingerprint
from findvl.index.scoring import QueryEmbedding

__all__ = [
    "AnnSettings",
    "FaissBackend",
    "FindIndex",
    "IndexManifest",
    "ModelFingerprint",
    "QueryEmbedding",
    "SearchHit",
]
