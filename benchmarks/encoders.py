"""Forward time of the Hugging Face encoder adapters on tiny random checkpoints, and cache effect.

Writes tiny SAM / DINOv2 / CLIP-vision / LLaMA (GQA) / CLIP-text checkpoints into a temporary
directory, loads them through ``findvl.encoders.loading`` and prints one JSON object:
per-image vision forward time (ms, median of ``--repeats``), per-sentence language forward time,
and the text cache's hit ratio and hit vs miss time on a stream of repeated sentences.

    PYTHONPATH=src python benchmarks/encoders.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from findvl.encoders.loading import load_language_encoder, load_vision_encoder  # noqa: E402
from findvl.encoders.text_cache import TextFeatureCache  # noqa: E402
from tiny_checkpoints import (  # noqa: E402  (tiny checkpoint writers shared with the tests)
    SENTENCES,
    write_tiny_clip,
    write_tiny_clip_vision,
    write_tiny_dinov2,
    write_tiny_llama,
    write_tiny_sam,
)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_vision(root: Path, size: int, repeats: int) -> dict[str, float]:
    writers = {"sam": write_tiny_sam, "dinov2": write_tiny_dinov2,
               "clip_vision_model": write_tiny_clip_vision}  # fmt: skip
    pixels = torch.randn(1, 3, size, size)
    out = {}
    for name, write in writers.items():
        encoder = load_vision_encoder(write(root / name)).eval()
        with torch.no_grad():
            out[name] = median_ms(lambda e=encoder: e.forward_features(pixels), repeats)
    return out


def bench_language(root: Path, repeats: int) -> dict[str, float]:
    encoders = {
        "llama_layer-2": load_language_encoder(write_tiny_llama(root / "llama"), layer=-2),
        "clip_text": load_language_encoder(write_tiny_clip(root / "clip")),
    }
    return {
        name: median_ms(lambda e=encoder: e.encode([SENTENCES[0]]), repeats)
        for name, encoder in encoders.items()
    }


def bench_cache(root: Path, rounds: int) -> dict[str, float]:
    cache = TextFeatureCache(load_language_encoder(root / "llama", layer=-2))
    miss_s, hit_s = [], []
    for _ in range(rounds):
        cache.clear()
        start = time.perf_counter()
        cache.encode(SENTENCES)
        miss_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        cache.encode(SENTENCES)
        hit_s.append(time.perf_counter() - start)
    miss, hit = statistics.median(miss_s), statistics.median(hit_s)
    return {"hit_ratio": cache.stats.hit_ratio, "miss_batch_ms": 1e3 * miss,
            "hit_batch_ms": 1e3 * hit, "miss_over_hit_time": miss / hit}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_HOME"] = str(Path(tmp) / "hf")
        root = Path(tmp)
        report = {
            "torch_threads": torch.get_num_threads(),
            "image_size": args.image_size,
            "vision_ms_per_image": bench_vision(root, args.image_size, args.repeats),
            "language_ms_per_sentence": bench_language(root, args.repeats),
            "text_cache": bench_cache(root, args.repeats),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
