"""Embedding a collection with many processes (``torchrun``), merged into one index.

Every rank computes the same plan (the batches :func:`~findvl.index.build.plan_batches`
gives for the main index ``INDEX``) and embeds batches ``rank, rank + world, ...`` into its
own part, ``INDEX/parts/RRRRR-of-WWWWW`` (an index directory of its own, resumable like any
build). :func:`merge_parts` then appends the parts' shards to ``INDEX`` in plan order and
builds the first stage: the result is the index one process would have built with the same
batch size. Parts need a filesystem every rank can write (one machine, or a shared mount).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from findvl.index.backends import AnnSettings
from findvl.index.build import LOG, BuildReport, _log, done_record, embed_batches, plan_batches
from findvl.index.find_index import FindIndex
from findvl.index.manifest import MANIFEST, IndexManifest, ModelFingerprint
from findvl.index.store import EmbeddingStore, write_json

PARTS = "parts"
PART_META = "part.json"


def part_dir(root: Path, rank: int, world: int) -> Path:
    return Path(root) / PARTS / f"{rank:05d}-of-{world:05d}"


def build_part(
    root: str | Path,
    images_dir: str | Path,
    *,
    rank: int,
    world: int,
    fingerprint: ModelFingerprint,
    model,
    batch_size: int,
    ann: AnnSettings | None = None,
    milvus_uri: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Embed this rank's batches of the plan into its part (continuing a partial part)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    root = Path(root)
    if (root / MANIFEST).is_file():
        main = FindIndex.load(root, fingerprint=fingerprint, mmap=False)
    else:
        main = FindIndex.create(fingerprint, batch_size=batch_size)
    mine = plan_batches(main, images_dir)[rank::world]
    folder = part_dir(root, rank, world)
    if (folder / MANIFEST).is_file():
        part = FindIndex.load(folder, model=model, fingerprint=fingerprint, mmap=False)
    else:
        part = FindIndex.create(
            fingerprint,
            folder,
            ann=ann,
            milvus_uri=milvus_uri,
            batch_size=main.manifest.batch_size,
            collection=str(Path(images_dir).resolve()),
            model=model,
        )
    write_json(folder / PART_META, {"rank": rank, "world": world, "planned": len(mine)})
    todo = mine[len(part.store.shards) :]
    return embed_batches(part, images_dir, todo, progress=progress, desc=f"rank {rank}")


def merge_parts(root: str | Path) -> BuildReport:
    """Append every part's shards to ``root`` in plan order, sync, remove the parts.

    Raises ``ValueError`` naming a missing or unfinished part (rerun its rank with resume).
    """
    start = time.perf_counter()
    root = Path(root)
    folders = sorted((root / PARTS).glob("*-of-*"))
    if not folders:
        raise FileNotFoundError(f"{root}: no parts to merge ({root / PARTS}/*-of-*)")
    metas = [json.loads((f / PART_META).read_text()) for f in folders]
    world = metas[0]["world"]
    if sorted(m["rank"] for m in metas) != list(range(world)) or any(
        m["world"] != world for m in metas
    ):
        raise ValueError(f"{root / PARTS}: expected parts 0..{world - 1} of {world}")
    stores = [EmbeddingStore.open(f) for f in folders]
    for meta, store, folder in zip(metas, stores, folders):
        if len(store.shards) != meta["planned"]:
            raise ValueError(
                f"{folder}: {len(store.shards)} of {meta['planned']} batches embedded "
                "(rerun this rank with --resume)"
            )
    part_manifest = IndexManifest.load(folders[0])
    if (root / MANIFEST).is_file():
        main = FindIndex.load(root, fingerprint=part_manifest.model, mmap=False)
    else:
        main = FindIndex.create(part_manifest.model, root, batch_size=part_manifest.batch_size)
        main.manifest.ann = part_manifest.ann
        main.manifest.collection = part_manifest.collection
    report = BuildReport()
    for b in range(sum(len(s.shards) for s in stores)):
        shard = stores[b % world].shards[b // world]
        main.add_embeddings(
            shard.ids, np.asarray(shard.images), np.asarray(shard.objects), shard.skipped
        )
        report.added += len(shard.ids)
        report.skipped += shard.skipped
    main.sync()
    report.total, report.seconds = len(main), time.perf_counter() - start
    shutil.rmtree(root / PARTS)
    _log(root / LOG, {**done_record(report), "event": "merged", "parts": world})
    return report
