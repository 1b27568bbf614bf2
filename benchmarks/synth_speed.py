"""Throughput of the synthetic world on one core: scenes alone, and scenes + all files written.

Usage: ``taskset -c 0 python benchmarks/synth_speed.py [--images 1000] [--size 128]
[--repeats 3] [--dir DIR]``; prints one JSON line. Each figure is the median over the repeats
of images per wall-clock second and of CPU milliseconds per image, split into user time (this
code) and system time (the kernel creating and writing files, which depends on the file system
and its state).
``--dir`` picks the file system written to (default: the system's temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from findvl.data.synth.shapes import sample_scene  # noqa: E402
from findvl.data.synth.write import SynthConfig, write_synth  # noqa: E402


def _measure(images: int, work) -> tuple[float, float, float]:
    """Wall, user CPU and system CPU milliseconds per image of ``work()``."""
    wall, before = time.perf_counter(), os.times()
    work()
    after = os.times()
    seconds = (
        time.perf_counter() - wall,
        after.user - before.user,
        after.system - before.system,
    )
    return tuple(1000 * s / images for s in seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temp dir in)")
    args = parser.parse_args()

    def scenes() -> None:
        for i in range(args.images):
            sample_scene(np.random.default_rng([0, i]), size=args.size)

    samples: dict[str, list[tuple[float, float, float]]] = {"scenes": [], "train": [], "val": []}
    sample_scene(np.random.default_rng(0), size=args.size)  # warm caches
    for _ in range(args.repeats):
        samples["scenes"].append(_measure(args.images, scenes))
        for split in ("train", "val"):
            with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                config = SynthConfig(Path(tmp), args.images, seed=0, size=args.size, split=split)
                samples[split].append(
                    _measure(args.images, lambda c=config: write_synth(c, progress=False))
                )
    result = {
        "benchmark": "synth_speed",
        "images": args.images,
        "size": args.size,
        "repeats": args.repeats,
        "dir": str(args.dir or tempfile.gettempdir()),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    names = {"scenes": "scenes", "train": "train_images", "val": "val_images_with_references"}
    # per_s: images (or scenes) per wall-clock second; user_ms / system_ms: CPU per image
    for key, name in names.items():
        wall, user, system = (statistics.median(r[i] for r in samples[key]) for i in range(3))
        result[name] = {
            "per_s": round(1000 / wall, 1),
            "user_ms": round(user, 3),
            "system_ms": round(system, 3),
        }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
