"""Exact fast inference against the plain reference path, side by side in one run.

    python benchmarks/inference.py                          # FIND-T size, 640² and 1024²
    python benchmarks/inference.py --preset find_tiny --sizes 64 128 --repeats 5

Both paths run the same model on the same encoded image (the image encoder is timed once,
apart). The *reference* path recomputes everything a request needs: the class table of the
vocabulary and every interface layer's image side. The *fast* path is what the predictor does:
class tables cached per vocabulary, the interface's image side (every layer's key/value
projections of its image level, positional terms, mask features) computed once per image
(``image side once``, reported separately) and reused by every prompt. Runs alternate between
the two paths so both see the same machine load; medians are reported, with the largest
difference between the two paths' outputs (they must agree within 1e-5).

``--preset focalt`` (default) is the FIND-T architecture of ``find_focalt_unicl`` (Focal-T,
FIND-T interface: 512 wide, 9 layers, 100 proposals) with random weights and a random
12-layer, 512-wide built-in text tower in place of UniCL's (whose tokenizer is not shipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import torch

from findvl.build import build_model, preset_config
from findvl.config import LanguageConfig
from findvl.model.requests import (
    Entity,
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
    VisualReference,
)
from findvl.model.sampler import rasterize
from findvl.model.sequence_types import ImageFeatures, InterfaceImageCache

#: 133 class names, the size of the COCO panoptic vocabulary.
CLASSES = [f"category number {i}" for i in range(133)]
PHRASES = ["the red car on the left", "a person holding an umbrella", "the sky"]


def build(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if preset == "focalt":
        cfg = preset_config("find_focalt_unicl")
        text = LanguageConfig(
            kind="tiny", dim=512, num_layers=12, num_heads=8, max_length=77, trainable=False
        )
        return build_model(dataclasses.replace(cfg, language=text)).eval()
    return build_model(preset_config(preset)).eval()


def requests(size: int) -> dict[str, list]:
    s = (size, size)
    click = VisualPrompt(rasterize(s, points=[(size // 3, size // 2)], radius=3))
    ref = VisualReference(None, VisualPrompt(rasterize(s, box=(5, 5, size // 4, size // 4))))
    text = InterleavedText(
        "a red circle next to a blue square", [Entity(0, 12, ref), Entity(21, 34)]
    )
    return {
        "generic (133 classes)": [GenericSegmentation(CLASSES)],
        "grounding (3 phrases)": [GroundedSegmentation([PHRASES])],
        "click (1 point)": [InteractiveSegmentation([[click]])],
        "joint (six tasks)": [
            GenericSegmentation(CLASSES),
            GroundedSegmentation([PHRASES]),
            InteractiveSegmentation([[click]]),
            ImageTextRetrieval(["a photo of a street"]),
            InterleaveSegmentation([text]),
            InterleaveRetrieval([text]),
        ],
    }


def _tensors(out) -> list[torch.Tensor]:
    found = []
    for name in (
        "generic_segmentation",
        "grounded_segmentation",
        "interactive_segmentation",
        "interleave_segmentation",
        "image_text_retrieval",
        "interleave_retrieval",
    ):
        task = getattr(out, name, None)
        if task is None:
            continue
        final = task.final
        for field in ("logits", "masks", "image", "query"):
            value = getattr(final, field, None)
            if isinstance(value, torch.Tensor):
                found.append(value)
    return found


def compare(model, feats: ImageFeatures, cache: InterfaceImageCache, reqs, repeats: int) -> dict:
    def run(fast: bool):
        if not fast:
            model.class_tables.clear()
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        out = model(feats, reqs, generator=generator, image_cache=cache if fast else None)
        return time.perf_counter() - start, out

    with torch.no_grad():
        _, ref_out = run(False)  # warm-up, and the outputs compared
        _, fast_out = run(True)
        ref_t, fast_t = [], []
        for _ in range(repeats):
            ref_t.append(run(False)[0])
            fast_t.append(run(True)[0])
    diff = max(float((a - b).abs().max()) for a, b in zip(_tensors(ref_out), _tensors(fast_out)))
    ref_ms, fast_ms = 1000 * statistics.median(ref_t), 1000 * statistics.median(fast_t)
    return {
        "reference_ms": ref_ms,
        "fast_ms": fast_ms,
        "speedup": ref_ms / fast_ms,
        "max_abs_diff": diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="focalt", help="focalt or a preset name")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.preset)
    results = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "preset": args.preset,
        "repeats": args.repeats,
        "sizes": {},
    }
    g = torch.Generator().manual_seed(0)
    for size in args.sizes:
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        with torch.no_grad():
            start = time.perf_counter()
            plain = model.encode_images([image])
            encode_ms = 1000 * (time.perf_counter() - start)
            start = time.perf_counter()
            cache = model.cache_image(plain)
            once_ms = 1000 * (time.perf_counter() - start)
        row = {"encode_ms": encode_ms, "image_side_once_ms": once_ms}
        for name, reqs in requests(size).items():
            row[name] = compare(model, plain, cache, reqs, args.repeats)
            print(size, name, json.dumps(row[name]), flush=True)
        results["sizes"][size] = row
    print(json.dumps(results, indent=1))
    print("\n| size | request | reference ms | fast ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for size, row in results["sizes"].items():
        for name, r in row.items():
            if isinstance(r, dict):
                print(
                    f"| {size}² | {name} | {r['reference_ms']:.0f} | {r['fast_ms']:.0f} | "
                    f"{r['speedup']:.2f}× | {r['max_abs_diff']:.1e} |"
                )
        print(
            f"| {size}² | image encoder / image side once | {row['encode_ms']:.0f} | "
            f"{row['image_side_once_ms']:.0f} | | |"
        )


if __name__ == "__main__":
    main()
