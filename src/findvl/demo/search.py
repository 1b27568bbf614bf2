"""Retrieval for the demo: a caption or interleaved query against a set of images.

Without an index the candidates (the val examples plus any uploads) are embedded through the
predictor (each image once, cached) and ranked by cosine similarity; with an index given to
the service (``--index``) and no uploads, the index answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from findvl.demo.parsing import DemoInputError
from findvl.demo.service import DemoService
from findvl.images import ImageError, read_image


def _path(item) -> Path:
    if isinstance(item, dict):
        return Path(item.get("path") or item.get("name") or "")
    return Path(getattr(item, "name", item))


def load_uploads(files) -> list[tuple[str, np.ndarray]]:
    """Uploaded files (paths, dicts with ``path`` or objects with ``.name``) ->
    ``[(file name, HxWx3 uint8)]``."""
    out = []
    for item in files or []:
        path = _path(item)
        try:
            out.append((path.name, read_image(path)))
        except (ImageError, FileNotFoundError) as error:
            raise DemoInputError(f"gallery upload {path.name}: {error}") from None
    return out


def _query(service: DemoService, query: str, reference_image, entity, box, points):
    if "[" in query:
        return service._interleaved(query, reference_image, entity, box, points)
    return query


def search(
    service: DemoService,
    query: str,
    files=None,
    top_k: int = 6,
    reference_image=None,
    entity: int | None = None,
    box: str = "",
    points: str = "",
) -> tuple[list[tuple[Image.Image, str]], dict]:
    """Rank the candidates for ``query``; returns a gallery ``[(picture, caption)]`` and JSON."""
    if not (query or "").strip():
        raise DemoInputError("query: write a caption, or a sentence with [id]<phrase> entities")
    top_k = int(top_k)
    if top_k < 1:
        raise DemoInputError(f"top k: expected a positive number, got {top_k}")
    candidates = list(service.gallery) + load_uploads(files)
    if service.index is not None and not files:
        return _search_index(service, query, top_k, reference_image, entity, box, points)
    if not candidates:
        raise DemoInputError("gallery: upload images to search (no examples are loaded)")
    q = _query(service, query, reference_image, entity, box, points)
    embeddings = []
    for name, rgb in candidates:
        _, encoded = service.encode(rgb, f"gallery image {name}")
        service.predictor.set_encoded(encoded)
        embeddings.append(service.predictor.embed_image())
    query_embedding = service.predictor.embed_query(q)  # the last image gives the context
    scores = F.normalize(torch.stack(embeddings), dim=-1) @ F.normalize(query_embedding, dim=-1)
    order = scores.argsort(descending=True)[:top_k].tolist()
    results = [
        {"rank": r + 1, "name": candidates[i][0], "score": round(float(scores[i]), 6)}
        for r, i in enumerate(order)
    ]
    gallery = [
        (Image.fromarray(candidates[i][1]), f"{r + 1}. {candidates[i][0]} ({float(scores[i]):.3f})")
        for r, i in enumerate(order)
    ]
    return gallery, {"query": query, "searched": len(candidates), "results": results}


def _search_index(service, query, top_k, reference_image, entity, box, points):
    """Ask the :class:`findvl.index.FindIndex` (ids are paths under its collection folder)."""
    q = _query(service, query, reference_image, entity, box, points)
    index = service.index
    if isinstance(q, str):
        hits = index.search(q, k=top_k)
    else:
        refs = {e.entity_id: e.reference for e in q.entities if e.reference is not None}
        hits = index.search(query, refs, k=top_k)
    folder = Path(index.manifest.collection or ".")
    results, gallery = [], []
    for r, hit in enumerate(hits):
        results.append({"rank": r + 1, "name": hit.image, "score": round(hit.score, 6)})
        path = folder / hit.image
        if path.is_file():
            caption = f"{r + 1}. {hit.image} ({hit.score:.3f})"
            gallery.append((Image.fromarray(read_image(path)), caption))
    return gallery, {"query": query, "searched": len(index), "results": results, "index": True}
