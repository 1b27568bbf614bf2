"""Build an index from a folder of images: batched, logged, resumable, appendable.

The images under the folder (sorted paths) that the index does not hold yet are cut into
batches of the manifest's batch size, in order; each batch is embedded and committed as one
shard (:mod:`findvl.index.store`) before the next starts. A build killed at any point and run
again with ``resume=True`` therefore embeds the same batches as an uninterrupted build and ends
with the identical index; a rerun on a folder with new files embeds only those. Unreadable
files are skipped, counted and recorded with their shard (a rerun does not retry them).
Progress goes to a tqdm bar on stderr and one JSON line per batch to ``INDEX/build.jsonl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from findvl.images import read_image_tensor
from findvl.index.backends import AnnSettings
from findvl.index.embed import embed_images, list_images
from findvl.index.find_index import FindIndex
from findvl.index.manifest import MANIFEST, ModelFingerprint

LOG = "build.jsonl"


@dataclass
class BuildReport:
    """What a build did: ``added`` images embedded now, ``skipped`` unreadable files now
    (``{"path", "error"}``), ``total`` images in the index, ``seconds`` of wall time."""

    added: int = 0
    skipped: list[dict] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0


def _log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def open_for_build(
    out: Path,
    fingerprint: ModelFingerprint,
    *,
    images_dir: Path,
    resume: bool,
    batch_size: int,
    ann: AnnSettings,
    milvus_uri: str | None,
    model,
) -> FindIndex:
    """A new index at ``out``, or (``resume``) the existing one after checking the model."""
    if (out / MANIFEST).is_file():
        if not resume:
            raise FileExistsError(
                f"--out: {out} already holds an index (pass --resume to continue or add files)"
            )
        return FindIndex.load(out, model=model, fingerprint=fingerprint, mmap=False)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out: {out} exists and is not an index")
    return FindIndex.create(
        fingerprint,
        out,
        ann=ann,
        milvus_uri=milvus_uri,
        batch_size=batch_size,
        collection=str(images_dir.resolve()),
        model=model,
    )


def plan_batches(index: FindIndex, images_dir: str | Path) -> list[list[str]]:
    """The images under ``images_dir`` that ``index`` lacks (sorted), cut into batches of the
    manifest's batch size."""
    done = set(index.store.ids) | {s["path"] for s in index.store.skipped}
    todo = [p for p in list_images(images_dir) if p not in done]
    size = index.manifest.batch_size
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def embed_batches(
    index: FindIndex,
    images_dir: str | Path,
    batches: list[list[str]],
    *,
    progress: bool = True,
    desc: str = "index build",
) -> BuildReport:
    """Embed ``batches`` of image paths in order, one committed shard each (no first stage)."""
    start = time.perf_counter()
    images_dir = Path(images_dir)
    report = BuildReport()
    log = index.root / LOG if index.root is not None else None
    total = sum(len(b) for b in batches)
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for paths in batches:
            t0 = time.perf_counter()
            tensors, ids, skipped = [], [], []
            for rel in paths:
                try:
                    tensors.append(read_image_tensor(images_dir / rel))
                    ids.append(rel)
                except (OSError, ValueError) as error:
                    skipped.append({"path": rel, "error": str(error)})
            if tensors:
                images, objects = embed_images(index.model, tensors)
            else:
                dim, num = index.store.dims or (0, 0)
                images, objects = _empty(dim, num)
            index.add_embeddings(ids, images, objects, skipped)
            report.added += len(ids)
            report.skipped += skipped
            bar.update(len(paths))
            if log is not None:
                _log(log, _record(index, len(ids), skipped, time.perf_counter() - t0))
    report.total, report.seconds = len(index), time.perf_counter() - start
    return report


def build_index(
    index: FindIndex,
    images_dir: str | Path,
    *,
    progress: bool = True,
) -> BuildReport:
    """Embed the images under ``images_dir`` that ``index`` lacks, then sync its first stage.

    Args:
        index: an index with a model (from :func:`open_for_build` or ``FindIndex.create``).
        images_dir: the collection (png/jpg/jpeg/webp, recursive); ids are relative paths.
        progress: show a progress bar on stderr.
    """
    start = time.perf_counter()
    report = embed_batches(index, images_dir, plan_batches(index, images_dir), progress=progress)
    index.sync()
    report.total, report.seconds = len(index), time.perf_counter() - start
    if index.root is not None:
        _log(index.root / LOG, done_record(report))
    return report


def done_record(report: BuildReport) -> dict:
    return {
        "event": "done",
        "added": report.added,
        "skipped": len(report.skipped),
        "total": report.total,
        "seconds": round(report.seconds, 3),
    }


def _record(index: FindIndex, added: int, skipped: list[dict], seconds: float) -> dict:
    return {
        "event": "batch",
        "shard": len(index.store.shards) - 1,
        "images": added,
        "skipped": [s["path"] for s in skipped],
        "total": len(index.store),
        "seconds": round(seconds, 4),
        "images_per_s": round(added / seconds, 2) if seconds > 0 else None,
    }


def _empty(dim: int, num: int):
    import numpy as np

    return np.zeros((0, dim), np.float32), np.zeros((0, num, dim), np.float32)
