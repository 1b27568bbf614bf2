"""Throughput of the synthetic world on one core: scenes alone, and scenes + all files written.

Usage: ``python benchmarks/synth_speed.py [--images 500] [--size 128]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from findvl.data.synth import SynthConfig, write_synth  # noqa: E402
from findvl.data.synth_shapes import sample_scene  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    start = time.perf_counter()
    for i in range(args.images):
        sample_scene(np.random.default_rng([0, i]), size=args.size)
    scene_rate = args.images / (time.perf_counter() - start)

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "val"):
            config = SynthConfig(Path(tmp), args.images, seed=0, size=args.size, split=split)
            start = time.perf_counter()
            write_synth(config, progress=False)
            rates[split] = args.images / (time.perf_counter() - start)
    result = {
        "benchmark": "synth_speed",
        "images": args.images,
        "size": args.size,
        "scenes_per_s": round(scene_rate, 1),
        "train_images_per_s": round(rates["train"], 1),
        "val_images_per_s_with_references": round(rates["val"], 1),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
