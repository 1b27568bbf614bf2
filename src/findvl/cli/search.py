"""``findvl search INDEX --checkpoint RUN --query TEXT [--ref ID=IMAGE[:REGION]]...``.

The query is FIND-Bench markup: ``"a [1]<dog> on a red sofa"``; ``--ref 1=me.jpg:120,40,300,260``
replaces entity 1 by that box of ``me.jpg`` (or ``:mask.png`` for a mask, nothing for the whole
image). Prints the ranked images with their scores, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", type=Path, help="index directory (findvl index build)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the index's checkpoint")
    parser.add_argument("--query", required=True, help='markup, e.g. "a [1]<dog> on a sofa"')
    parser.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="ID=IMAGE[:MASK_PNG|:x0,y0,x1,y1]",
        help="a visual reference for entity ID (repeatable)",
    )
    parser.add_argument("--top-k", type=int, default=10, help="images to print (10)")
    parser.add_argument(
        "--candidates", type=int, default=None, help="first-stage candidates reranked (100)"
    )
    parser.add_argument(
        "--nprobe", type=int, default=None, help="IVF lists visited (default: the index's)"
    )
    parser.add_argument("--json", action="store_true", help='print [{"image", "score"}, ...]')
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("top_k", "candidates", "nprobe"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be a positive integer, got {value}")
    from findvl.index.embed import parse_ref
    from findvl.index.find_index import FindIndex
    from findvl.index.manifest import IndexManifest, ModelFingerprint
    from findvl.runs import load_run

    IndexManifest.load(args.index)  # a missing index is reported before the model loads
    refs, ref_paths = {}, []
    for spec in args.ref:
        entity, reference, path = parse_ref(spec)
        if entity in refs:
            raise ValueError(f"--ref {spec!r}: entity {entity} already has a reference")
        refs[entity] = reference
        ref_paths.append(path)
    loaded = load_run(args.checkpoint, device=args.device)
    index = FindIndex.load(
        args.index, model=loaded.model, fingerprint=ModelFingerprint.of_run(loaded)
    )
    if args.nprobe is not None and index.backend is not None:
        from dataclasses import replace

        index.backend.settings = replace(index.backend.settings, nprobe=args.nprobe)
    query = index.embed_query(args.query, refs)
    root = index.manifest.collection
    query.reference_ids = _collection_ids(ref_paths, root)
    hits = index.search_embedding(query, args.top_k, candidates=args.candidates)
    paths = [str(Path(root, h.image)) if root else h.image for h in hits]
    if args.json:
        print(json.dumps([{"image": p, "score": h.score} for p, h in zip(paths, hits)]))
        return 0
    for rank, (path, hit) in enumerate(zip(paths, hits), 1):
        print(f"{rank:3d}  {hit.score:8.4f}  {path}")
    return 0


def _collection_ids(paths: list[Path], root: str) -> list[str]:
    """Ids of the reference images that are in the collection (they get the official
    tie-breaking penalty, as a query's own reference images in the evaluator)."""
    if not root:
        return []
    ids = []
    for path in paths:
        try:
            ids.append(path.resolve().relative_to(Path(root)).as_posix())
        except ValueError:
            continue
    return ids
