"""FindIndex at a million images: build time, memory, query latency and recall@10.

Synthetic embeddings of the model's size (``--dim``, 512 = FIND-T's semantic space), drawn
around ``--clusters`` centres (real image embeddings cluster; uniform noise would make every
ANN index fail and no collection looks like it) and normalised. Queries are perturbed
copies of gallery items (cosine ~0.8 with the item). Object embeddings (``--objects`` per
image, float16, as the rerank reads them) sit in a memory-mapped file. Measured in one run,
side by side:

* brute force in numpy (``normalised @ query``, the exact top-10) per query;
* the FAISS first stage as ``auto`` chooses it (IVF above 50k images): build, size, p50/p99
  latency of one query, recall@10 against the exact top-10;
* a full ``FindIndex.search_embedding`` (first stage + rerank of 100 candidates with the
  entity↔object term, objects read from the memory map) per query.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/index_scale.py --num 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from findvl.index import AnnSettings, FaissBackend, FindIndex, QueryEmbedding
from findvl.index.manifest import ModelFingerprint
from findvl.index.scoring import normalize
from findvl.index.store import Shard

POOL = 65536
STEP = 16384


def _rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def _gallery(num: int, dim: int, clusters: int, rng) -> np.ndarray:
    """Unit vectors: centre + noise of the same norm (cosine ~0.5 within a cluster). The noise
    of an item is the sum of three rows of a pool of 65536 normal rows (drawing 1M x 512 fresh
    normals costs minutes on a shared core; with one row per item, items sharing it would be
    as close as cluster mates across clusters). Written in place through reused buffers:
    fresh pages are slow to fault in on a busy machine."""
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    pool = rng.standard_normal((POOL, dim), dtype=np.float32) / np.sqrt(3)
    out = np.empty((num, dim), np.float32)
    buf = np.empty((STEP, dim), np.float32)
    norms = np.empty((STEP, 1), np.float32)
    for start in range(0, num, STEP):
        n = min(STEP, num - start)
        rows = out[start : start + n]
        np.take(centres, rng.integers(0, clusters, n), axis=0, out=rows)
        for _ in range(3):
            np.take(pool, rng.integers(0, POOL, n), axis=0, out=buf[:n])
            rows += buf[:n]
        np.sqrt(np.einsum("ij,ij->i", rows, rows)[:, None], out=norms[:n])
        rows /= norms[:n]
    return out


def _objects(path: Path, images: np.ndarray, objects: int, rng) -> np.ndarray:
    """``[G,N,P]`` float16 in a ``.npy`` file (written sequentially), read back memory-mapped:
    each image's vector plus pooled noise per object."""
    dim = images.shape[1]
    pool = rng.standard_normal((POOL, dim), dtype=np.float32) / np.sqrt(dim)
    header = {"descr": "<f2", "fortran_order": False, "shape": (len(images), objects, dim)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        rows = 8192  # buffers reused: fresh pages are slow to fault in
        buf = np.empty((rows, objects, dim), np.float32)
        half = np.empty((rows, objects, dim), np.float16)
        for start in range(0, len(images), rows):
            n = min(rows, len(images) - start)
            np.take(pool, rng.integers(0, POOL, (n, objects)), axis=0, out=buf[:n])
            buf[:n] += images[start : start + n, None]
            half[:n] = buf[:n]
            f.write(half[:n].tobytes())
    return np.load(path, mmap_mode="r")


def _report(result: dict) -> None:
    """The results so far, on stderr (a run cut short still leaves its numbers)."""
    print(json.dumps(result), file=sys.stderr, flush=True)


def _timed(fn, items) -> tuple[list, list[float]]:
    out, times = [], []
    for item in items:
        t0 = time.perf_counter()
        out.append(fn(item))
        times.append(time.perf_counter() - t0)
    return out, times


def _exact_top10(unit: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ unit.T  # QxP @ PxG -> QxG
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--brute-queries", type=int, default=10, help="timed numpy queries")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    result: dict = {"num": args.num, "dim": args.dim, "objects": args.objects, "threads": threads}
    t0 = time.perf_counter()
    unit = _gallery(args.num, args.dim, args.clusters, rng)
    picks = rng.choice(args.num, args.queries, replace=False)
    noise = rng.standard_normal((args.queries, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    queries = normalize(unit[picks] + 0.75 * noise)  # cosine ~0.8 with the item it came from
    with tempfile.TemporaryDirectory(prefix="findvl-bench-") as tmp:
        objects = _objects(Path(tmp) / "objects.npy", unit, args.objects, rng)
        result["generate_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        exact = _exact_top10(unit, queries)
        result["exact_top10_all_queries_s"] = round(time.perf_counter() - t1, 1)
        brute = queries[: args.brute_queries]
        _, brute_times = _timed(lambda q: np.argpartition(-(unit @ q), 10)[:10], brute)
        result["numpy_brute_force"] = _percentiles(brute_times)
        _report(result)
        settings = AnnSettings(nprobe=args.nprobe[0])
        index = FindIndex.create(ModelFingerprint("bench", "", ""), ann=settings)
        index.store.append(Shard([str(i) for i in range(args.num)], unit, objects))
        t1 = time.perf_counter()
        index.sync()
        backend: FaissBackend = index.backend
        result["ann_build"] = {
            "kind": backend.kind,
            "nlist": int(backend.index.nlist),
            "build_s": round(time.perf_counter() - t1, 1),
            "vectors_gib": round(args.num * args.dim * 4 / 2**30, 2),
        }
        _report(result)
        result["ann"] = []
        for nprobe in args.nprobe:
            backend.settings = AnnSettings(nprobe=nprobe)
            found, ann_times = _timed(lambda q: backend.search(q[None], 10)[1][0], queries)
            recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
            row = {"nprobe": nprobe, **_percentiles(ann_times), "recall@10": round(recall, 4)}
            entity_rng = np.random.default_rng(1)
            full = [QueryEmbedding(q, entity_rng.standard_normal((2, args.dim))) for q in queries]
            _, full_times = _timed(lambda q: index.search_embedding(q, 10, candidates=100), full)
            row["search_with_rerank_100"] = _percentiles(full_times)
            result["ann"].append(row)
            _report(result)
        result["peak_rss_gib"] = round(_rss_gib(), 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
