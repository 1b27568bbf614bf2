"""Throughput of every evaluation metric on generated inputs; prints one JSON object.

    python benchmarks/eval_speed.py --images 100 --size 128
    python benchmarks/eval_speed.py --data /data/coco  # + GT-vs-GT PQ on annotations/panoptic_*
    python benchmarks/eval_speed.py --evaluate --images 100 --size 64 --threads 2

Generated data: per image a few rectangles of 3 categories (panoptic PNG, label PNG, RLE masks),
predictions = ground truth with jitter. Retrieval: 5 captions per image.

``--evaluate`` times ``evaluate_run`` end to end instead (every task, as the quickstart calls
it): a synthetic val split (``findvl data synth --holdout-combos``) and an untrained
``find_tiny`` model; the metrics' digest tells whether two code versions give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from findvl.metrics.grounding import evaluate_grounding
from findvl.metrics.instances import evaluate_instances
from findvl.metrics.interleave import interleave_scores
from findvl.metrics.io import rle_to_json
from findvl.metrics.panoptic import evaluate_panoptic
from findvl.metrics.retrieval import retrieval_metrics
from findvl.metrics.semantic import evaluate_semantic
from findvl.panoptic_ids import id2rgb


def _segments(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[size,size]`` segment ids 1..k from random rectangles over a background segment."""
    ids = np.ones((size, size), np.int64)
    for k in range(2, 8):
        y, x = rng.integers(0, size // 2, size=2)
        h, w = rng.integers(size // 8, size // 2, size=2)
        ids[y : y + h, x : x + w] = k
    return ids


def write_dataset(root: Path, images: int, size: int, seed: int = 0) -> None:
    """Ground truth and jittered predictions in every format under ``root``."""
    rng = np.random.default_rng(seed)
    categories = [{"id": c, "name": f"c{c}", "isthing": int(c < 3)} for c in (1, 2, 3)]
    for sub in ("pan_gt", "pan_pred", "sem_gt", "sem_pred"):
        (root / sub).mkdir()
    pan = {"gt": [], "pred": []}
    inst_images, inst_anns, inst_pred, ground_gt, ground_pred = [], [], [], [], []
    for i in range(images):
        gt = _segments(rng, size)
        pred = np.roll(gt, shift=int(rng.integers(-3, 4)), axis=1)
        cats = {int(s): int(rng.integers(1, 4)) for s in np.unique(gt)}
        for name, ids in (("gt", gt), ("pred", pred)):
            Image.fromarray(id2rgb(ids)).save(root / f"pan_{name}" / f"{i}.png")
            present = [int(s) for s in np.unique(ids)]
            pan[name].append(
                {
                    "image_id": i,
                    "file_name": f"{i}.png",
                    "segments_info": [
                        {"id": s, "category_id": cats[s], "iscrowd": 0} for s in present
                    ],
                }
            )
            labels = np.vectorize(cats.get)(ids).astype(np.uint8)
            Image.fromarray(labels).save(root / f"sem_{name}" / f"{i}.png")
        inst_images.append({"id": i, "width": size, "height": size})
        for s in np.unique(gt):
            gt_rle, pred_rle = rle_to_json(gt == s), rle_to_json(pred == s)
            ys, xs = np.nonzero(gt == s)
            box = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
            inst_anns.append(
                {
                    "id": len(inst_anns) + 1,
                    "image_id": i,
                    "category_id": cats[int(s)],
                    "segmentation": gt_rle,
                    "area": float(len(xs)),
                    "bbox": box,
                    "iscrowd": 0,
                }
            )
            inst_pred.append(
                {
                    "image_id": i,
                    "category_id": cats[int(s)],
                    "score": float(rng.random()),
                    "segmentation": pred_rle,
                }
            )
            ground_gt.append({"image_id": i, "entity_id": int(s), "segmentation": gt_rle})
            ground_pred.append({"image_id": i, "entity_id": int(s), "segmentation": pred_rle})
    for name in ("gt", "pred"):
        data = {"annotations": pan[name], "categories": categories}
        (root / f"pan_{name}.json").write_text(json.dumps(data))
    instances = {"images": inst_images, "annotations": inst_anns, "categories": categories}
    (root / "inst_gt.json").write_text(json.dumps(instances))
    (root / "inst_pred.json").write_text(json.dumps(inst_pred))
    (root / "ground_gt.json").write_text(json.dumps(ground_gt))
    (root / "ground_pred.json").write_text(json.dumps(ground_pred))


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def coco_panoptic(data: Path, workers: int) -> dict[str, float]:
    """GT-vs-GT PQ on the first ``annotations/panoptic_*.json`` of a COCO folder."""
    gt_json = sorted((data / "annotations").glob("panoptic_*.json"))[0]
    gt_dir = gt_json.with_suffix("")
    num = len(json.loads(gt_json.read_text())["annotations"])
    seconds = timed(
        lambda: evaluate_panoptic(gt_json, gt_dir, gt_json, gt_dir, workers=workers, progress=False)
    )
    return {"file": gt_json.name, "images": num, "images_per_s": num / seconds}


def evaluate_speed(images: int, size: int, threads: int | None, seed: int = 1) -> dict:
    """Wall time of ``evaluate_run`` (all tasks) on a synthetic val split, tiny model."""
    import hashlib

    import torch

    from findvl.build import build_preset
    from findvl.data.synth.write import SynthConfig, write_synth
    from findvl.evaluation.runner import evaluate_run

    if threads is not None:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "world"
        config = SynthConfig(root, images, seed, size=size, split="val", holdout_combos=True)
        write_synth(config, progress=False)
        model = build_preset("find_tiny")
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluate_run(
            model, None, None, root, "val", seed=seed, progress=False, interactive_objects=2
        )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    digest = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "images": images,
        "size": size,
        "threads": torch.get_num_threads(),
        "evaluate_seconds": seconds,
        "cpu_seconds": cpu,  # all threads; spin-waiting threads count too
        "images_per_s": images / seconds,
        "metrics_sha256": digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4, help="panoptic reader threads")
    parser.add_argument("--data", type=Path, default=None, help="COCO-style folder (optional)")
    parser.add_argument("--evaluate", action="store_true", help="time evaluate_run end to end")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (--evaluate)")
    args = parser.parse_args()
    if args.evaluate:
        print(json.dumps(evaluate_speed(args.images, args.size, args.threads), indent=1))
        return
    n = args.images
    report: dict[str, object] = {"images": n, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root, n, args.size)
        runs = {
            f"panoptic_{args.workers}threads": lambda: evaluate_panoptic(
                root / "pan_gt.json",
                root / "pan_gt",
                root / "pan_pred.json",
                root / "pan_pred",
                workers=args.workers,
                progress=False,
            ),
            "panoptic_1thread": lambda: evaluate_panoptic(
                root / "pan_gt.json",
                root / "pan_gt",
                root / "pan_pred.json",
                root / "pan_pred",
                workers=1,
                progress=False,
            ),
            "semantic": lambda: evaluate_semantic(
                root / "sem_gt", root / "sem_pred", progress=False
            ),
            "instances": lambda: evaluate_instances(root / "inst_gt.json", root / "inst_pred.json"),
            "grounding": lambda: evaluate_grounding(
                root / "ground_gt.json", root / "ground_pred.json"
            ),
        }
        for name, fn in runs.items():
            report[f"{name}_images_per_s"] = n / timed(fn)
    rng = np.random.default_rng(0)
    image_of_caption = np.repeat(np.arange(n), 5)
    scores = rng.normal(size=(5 * n, n))
    seconds = timed(lambda: retrieval_metrics(scores, np.arange(5 * n), image_of_caption))
    report["retrieval_images_per_s"] = n / seconds
    legend, images = rng.normal(size=(n, 512)), rng.normal(size=(n, 512))
    entities, objects = rng.normal(size=(n, 4, 512)), rng.normal(size=(n, 100, 512))
    seconds = timed(
        lambda: interleave_scores(legend, images, entities, np.ones((n, 4), bool), objects)
    )
    report["interleave_score_queries_per_s"] = n / seconds
    if args.data is not None:
        report["coco_panoptic_gt_vs_gt"] = coco_panoptic(args.data, args.workers)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
