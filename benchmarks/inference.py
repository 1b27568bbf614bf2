"""Exact fast inference against the plain reference path (and the official decoder), side by side.

    python benchmarks/inference.py                          # FIND-T size, 640² and 1024²
    python benchmarks/inference.py --preset find_tiny --sizes 64 128 --repeats 5
    python benchmarks/inference.py --official /path/to/FIND  # + the official FIND decoder

Every path starts from the same pixel-decoder outputs of one image (the image encoder is
timed once, apart) and runs the same requests; all include the text tower on the request's
texts. The *reference* path recomputes everything a request needs from them: the interface's
image levels and spatial-token maps, the class table of the vocabulary and every interface
layer's image side. The *new image* path is the predictor on an image it has not seen: the
class table cached per vocabulary, the image side computed inside the forward. The *fast* path
is the predictor on a cached image: class tables cached per vocabulary, and the image side
(spatial-token maps, every layer's key/value projections of its image level, positional terms,
mask features) computed once per image (``image side once``, reported apart) and reused by
every prompt. The *answer* path is the fast path as the predictor runs it: the forward keeps
the masks' two factors (mask embeddings and mask features) and forms only the masks the call
returns, one per target (grounding phrase, click, entity; the last layer's stride-4 masks of the
other proposals are never formed) and, for generic segmentation, those of the
:data:`GENERIC_KEPT` best proposals; its masks are compared with the fast path's same masks.
Runs alternate between the paths so all see the same machine load; medians are
reported, with the largest absolute and relative (``max|a-b| / max|b|``) difference between
the fast and reference outputs. Both are the same computation in another order; at FIND-T
size with random weights a rounding difference of one mask logit near the attention threshold
can flip one attention-mask cell, which moves the outputs by up to ~1e-3 relative (the same
as the reference path on features changed by 1e-7 relative).

*fast GFLOP* counts the matrix products, convolutions and attention of one fast call
(``benchmarks/flops.py``); *fast floor ms* divides it by the rate of one 2048² fp32 matmul
measured at the start of the run: the time of the same arithmetic if all of it ran at the
machine's best matmul rate.

``--preset focalt`` (default) is the FIND-T architecture of ``find_focalt_unicl`` (Focal-T,
FIND-T interface: 512 wide, 9 layers, 100 proposals) with random weights and a random
12-layer, 512-wide built-in text tower in place of UniCL's (whose tokenizer is not shipped).

``--official DIR`` (a checkout of UX-Decoder/FIND at commit 521c934) adds the unmodified
official decoder (``benchmarks/inference_official.py`` says exactly what its timing holds: the
text tower and one decoder pass, from the same pixel-decoder outputs, its class table computed
once per vocabulary as its evaluation does). Then the model is FIND-T as released
(``focalt_unicl_lang``: its 12-layer UniCL text tower, with the shipped CLIP tokenizer) with the
parity check's seeded random weights, converted with ``findvl convert`` so both run the same
weights, on the parity check's random backbone features. The largest difference between the
fast path and the official outputs is reported (logits and masks of each task; in the joint
pass generic logits and masks, grounding and click masks).
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
from findvl.model import heads
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
from findvl.model.sequence_types import ImageFeatures
from flops import count_gflop, matmul_gflops

#: 133 class names, the size of the COCO panoptic vocabulary.
CLASSES = [f"category number {i}" for i in range(133)]
PHRASES = ["the red car on the left", "a person holding an umbrella", "the sky"]
CAPTION = "a photo of a street"
CONFIG_OFFICIAL = "focalt_unicl_lang"


#: Proposals whose masks the *answer* path forms for generic segmentation (random weights pass
#: no object threshold; a COCO image's panoptic result holds about 10 to 30 segments).
GENERIC_KEPT = 20


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
            ImageTextRetrieval([CAPTION]),
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


def pairs_with_official(name: str, out, official: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(findvl, official)`` tensors of request ``name``, laid out as the official ones."""
    gen, gr = out.generic_segmentation, out.grounded_segmentation
    click = out.interactive_segmentation
    if name.startswith("generic"):
        return [(gen.final.logits, official["logits"]), (gen.final.masks, official["masks"])]
    if name.startswith("grounding"):  # TxN -> NxT, as the official
        return [
            (gr.final.logits[0].t(), official["scores"]),
            (gr.final.masks[0], official["masks"]),
        ]
    if name.startswith("click"):
        return [
            (click.final.logits[0], official["scores"]),
            (click.final.masks[0], official["masks"]),
        ]
    return [
        (gen.final.logits, official["logits"]),
        (gen.final.masks, official["masks"]),
        (gr.final.masks[0], official["gmasks"]),
        (click.final.masks[0], official["smasks"]),
    ]


def _differences(pairs) -> tuple[float, float]:
    """Largest ``max|a-b|`` and largest ``max|a-b| / max|b|`` over ``(a, b)`` pairs."""
    diffs = [(float((a - b).abs().max()), float(b.abs().max())) for a, b in pairs]
    return max(d for d, _ in diffs), max(d / max(m, 1e-12) for d, m in diffs)


def reference_features(model, feats: ImageFeatures) -> ImageFeatures:
    """``feats`` with the interface's image levels and spatial-token maps recomputed."""
    levels = model.interface.image_levels(feats.pixel)
    maps = model.interface.spatial_token_levels(levels, feats.pixel)
    return ImageFeatures(feats.batch, feats.pixel, maps)


def compare(model, feats, cache, reqs, repeats: int, official=None, name: str = "") -> dict:
    """Median times of the paths on one request set; ``official`` (a callable, or None) runs
    the official decoder on the same inputs."""

    def run(path: str):
        if path == "reference":
            model.class_tables.clear()
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        cached = path in ("fast", "answer")
        inputs = feats if cached else reference_features(model, feats)
        out = model(
            inputs,
            reqs,
            generator=generator,
            dense_masks=path != "answer",
            image_cache=cache if cached else None,
        )
        if path == "answer":
            answer_masks(out)
        return time.perf_counter() - start, out

    def run_official():
        torch.manual_seed(0)
        start = time.perf_counter()
        out = official()
        return time.perf_counter() - start, out

    paths = ("reference", "fresh", "fast", "answer")
    times: dict[str, list[float]] = {p: [] for p in (*paths, "official")}
    with torch.no_grad():
        _, ref_out = run("reference")  # warm-up, and the outputs compared
        _, fast_out = run("fast")
        _, answer_out = run("answer")
        fast_gflop = count_gflop(lambda: run("fast"), model)
        answer_gflop = count_gflop(lambda: run("answer"), model)
        off_out = run_official()[1] if official else None
        for _ in range(repeats):
            for path in paths:
                times[path].append(run(path)[0])
            if official:
                times["official"].append(run_official()[0])
    pairs = list(zip(_tensors(fast_out), _tensors(ref_out)))
    diff, rel = _differences(pairs)
    result = {f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items() if v}
    result["speedup"] = result["reference_ms"] / result["fast_ms"]
    result["fast_gflop"], result["answer_gflop"] = fast_gflop, answer_gflop
    result["max_abs_diff"], result["max_rel_diff"] = diff, rel
    pairs = list(zip(answer_masks(answer_out), answer_masks(fast_out)))
    result["answer_max_abs"], result["answer_max_rel"] = _differences(pairs)
    if official:
        result["official_speedup"] = result["official_ms"] / result["fast_ms"]
        result["official_fresh_speedup"] = result["official_ms"] / result["fresh_ms"]
        pairs = pairs_with_official(name, fast_out, off_out)
        result["official_max_abs"], result["official_max_rel"] = _differences(pairs)
    return result


def resize_times(pixel, repeats: int) -> dict[str, float]:
    """Median ms of the heads' resize of the mask features to every attention level
    (:meth:`FindHeads.prepare`): strided slices where a side shrinks by an integer factor
    (``heads.bilinear_downsample``), against ``F.interpolate`` for every level, alternating."""
    times: dict[str, list[float]] = {"strided": [], "interpolate": []}

    def interpolate(x, size):
        return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)

    with torch.no_grad():
        for _ in range(repeats):
            for name, fn in (("strided", heads.bilinear_downsample), ("interpolate", interpolate)):
                start = time.perf_counter()
                for level in pixel.levels:
                    fn(pixel.mask_features, tuple(level.shape[-2:]))
                times[name].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def answer_masks(out) -> list[torch.Tensor]:
    """The masks a predictor call returns, formed from a forward that kept their factors: one
    per target (the best proposal), and for generic segmentation those of the
    :data:`GENERIC_KEPT` best-scoring proposals."""
    masks = []
    generic = out.generic_segmentation
    if generic is not None:
        scores = generic.final.logits[0].softmax(-1)[:, :-1].max(-1).values
        masks.append(
            generic.final.image_masks(0, scores.topk(min(GENERIC_KEPT, len(scores))).indices)
        )
    for name in ("grounded_segmentation", "interactive_segmentation", "interleave_segmentation"):
        task = getattr(out, name)
        if task is not None:
            masks.append(task.best_masks())
    return masks


def official_calls(side, name: str, reqs) -> object:
    """The official call answering request set ``name`` (``side``: an ``OfficialSide``)."""
    if name.startswith("generic"):
        return side.generic
    if name.startswith("grounding"):
        return lambda: side.grounding(PHRASES)
    if name.startswith("click"):
        click = torch.stack([p.positive for p in reqs[0].prompts[0]])
        return lambda: side.interactive(click)
    item = reqs[4].texts[0]
    side.prepare_joint(PHRASES, torch.stack([reqs[2].prompts[0][0].positive]), CAPTION, item)
    return side.joint


def print_table(results: dict) -> None:
    official = results.get("official") is not None
    head = "| canvas | request |" + (" official ms |" if official else "")
    head += " reference ms | new image ms | fast ms | fast GFLOP | fast floor ms |"
    head += " answer ms | answer GFLOP | answer floor ms | reference / fast |"
    head += " official / new image | official / fast | fast vs official |" if official else ""
    head += " fast vs reference | answer vs fast |"
    print(f"\n{head}\n" + "|---" * (head.count("|") - 1) + "|")
    for size, row in results["sizes"].items():
        for name, r in row.items():
            if not isinstance(r, dict) or "reference_ms" not in r:
                continue
            line = f"| {size}² | {name} |" + (f" {r['official_ms']:.0f} |" if official else "")
            line += f" {r['reference_ms']:.0f} | {r['fresh_ms']:.0f} | {r['fast_ms']:.0f} |"
            rate = results["machine"]["matmul_gflops"]
            line += f" {r['fast_gflop']:.1f} | {1000 * r['fast_gflop'] / rate:.0f} |"
            line += f" {r['answer_ms']:.0f} | {r['answer_gflop']:.1f} |"
            line += f" {1000 * r['answer_gflop'] / rate:.0f} |"
            line += f" {r['speedup']:.2f}× |"
            if official:
                line += f" {r['official_fresh_speedup']:.2f}× | {r['official_speedup']:.2f}× |"
                line += f" {_diff(r, 'official_max')} |"
            print(f"{line} {_diff(r, 'max')} | {_diff(r, 'answer_max')} |")
        encoder = "pixel decoder (fixed backbone features)" if official else "image encoder"
        print(
            f"\n{size}²: {encoder} {row['encode_ms']:.0f} ms, image side once "
            f"{row['image_side_once_ms']:.0f} ms; mask features to the attention levels "
            f"{row['mask_feature_resize_ms']['strided']:.0f} ms strided, "
            f"{row['mask_feature_resize_ms']['interpolate']:.0f} ms by interpolate\n"
        )


def _diff(r: dict, key: str) -> str:
    return f"{r[key + '_abs' if key != 'max' else 'max_abs_diff']:.1e} abs, " + (
        f"{r[key + '_rel' if key != 'max' else 'max_rel_diff']:.1e} rel"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="focalt", help="focalt or a preset name")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--official", default=None, help="a checkout of UX-Decoder/FIND (commit 521c934): "
        "add the official decoder, on FIND-T with the same random weights"
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    head = None
    if args.official:
        import inference_official

        model, head, official_cfg, channels = inference_official.load(args.official)
        table, table_ms = inference_official.class_table(head, official_cfg, CLASSES)
    else:
        model = build(args.preset)
    results = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "matmul_gflops": matmul_gflops(),
        },
        "preset": CONFIG_OFFICIAL if args.official else args.preset,
        "official": args.official,
        "repeats": args.repeats,
        "sizes": {},
    }
    g = torch.Generator().manual_seed(0)
    for size in args.sizes:
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        side = None
        if head is not None:
            features = inference_official.random_features(channels, size, seed=1)
            model.vision = inference_official.fixed_vision(features)
            side = inference_official.OfficialSide(head, official_cfg, features, table)
        with torch.no_grad():
            start = time.perf_counter()
            plain = model.encode_images([image])
            encode_ms = 1000 * (time.perf_counter() - start)
            start = time.perf_counter()
            feats = reference_features(model, plain)
            cache = model.cache_image(feats)
            once_ms = 1000 * (time.perf_counter() - start)
        row = {"encode_ms": encode_ms, "image_side_once_ms": once_ms}
        row["mask_feature_resize_ms"] = resize_times(feats.pixel, args.repeats)
        for name, reqs in requests(size).items():
            call = official_calls(side, name, reqs) if side is not None else None
            row[name] = compare(model, feats, cache, reqs, args.repeats, call, name)
            print(size, name, json.dumps(row[name]), flush=True)
        results["sizes"][size] = row
    if head is not None:
        results["official_class_table_ms"] = table_ms
    print(json.dumps(results, indent=1))
    print_table(results)
    if head is not None:
        print(f"official class table ({len(CLASSES)} classes, once): {table_ms:.0f} ms")


if __name__ == "__main__":
    main()
