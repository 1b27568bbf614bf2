"""Is a targeted task limited by its masks or by its choice among proposals?

    python benchmarks/proposal_choice.py --run RUN --data DIR [--images 25]
    python benchmarks/proposal_choice.py        # make demo's run, runs/quickstart (if present)
    python benchmarks/proposal_choice.py --run RUN --data DIR --click-agreement 0  # FIND's choice

For grounding (every referring expression's first sentence, up to 4 per image), for one
click at the centre of each of the first two segments of an image (as the evaluation's first
click) and for the filled bounding box of each of them (``box``), the mask IoU with the target
of the proposal the model chooses (argmax of its scores) and of the best of all its proposals
(the oracle choice), averaged over the first ``--images`` val images. The gap between the
two is what a better choice would win; the oracle is the ceiling of the masks themselves.
Also printed: the mean entropy of the choice (``ln N`` when uniform over N proposals), and for
grounding the same split by the target's area in pixels of the original image
(``by_area``) with what a chosen mask covers best (``covers``: the target, another segment
of the target's category, a segment of another thing category, or stuff). One JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from findvl.data.clicks import clicks_to_masks, next_click
from findvl.data.prompts import box_prompt
from findvl.data.readers.dataset import load_dataset
from findvl.evaluation.common import load_image
from findvl.model.requests import GroundedSegmentation, InteractiveSegmentation, VisualPrompt
from findvl.runs import load_run

DEMO = Path("runs/quickstart")  # where make demo writes its run and data
TASKS = ("grounding", "interactive", "box")
AREAS = ((0, 60), (60, 150), (150, None))  # target pixels: small, medium, large shapes
COVERS = ("target", "same_category", "other_thing", "stuff")


def _ious(masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[N,H,W]`` logits, ``[H,W]`` bool -> ``[N]`` IoU of each thresholded mask."""
    pred = (masks > 0).flatten(1)
    gt = target.flatten()[None]
    return (pred & gt).sum(1) / (pred | gt).sum(1).clamp(min=1)


def _entropy(logits: torch.Tensor) -> float:
    p = logits.float().softmax(-1)
    return float(-(p * p.clamp(min=1e-12).log()).sum())


def _record(stats: dict, task: str, ious: torch.Tensor, logits: torch.Tensor) -> None:
    stats[task]["chosen"].append(float(ious[logits.argmax()]))
    stats[task]["oracle"].append(float(ious.max()))
    stats[task]["entropy"].append(_entropy(logits))


def _area_key(pixels: int) -> str:
    for low, high in AREAS:
        if high is None or pixels < high:
            return f"{low}-{high}" if high is not None else f">={low}"
    raise AssertionError(pixels)


def _covered(chosen: torch.Tensor, masks: torch.Tensor, segments, target: int, isthing) -> str:
    """What the ``[H,W]`` logits ``chosen`` cover best among the image's segments."""
    best = int(_ious(masks.float() * 2 - 1, chosen > 0).argmax())  # IoU of each segment
    seg, ref = segments[best], segments[target]
    if best == target:
        return "target"
    if not isthing(seg.category_id):
        return "stuff"
    return "same_category" if seg.category_id == ref.category_id else "other_thing"


def measure(model, samples, isthing=lambda category: True) -> dict:
    stats = {t: {"chosen": [], "oracle": [], "entropy": []} for t in TASKS}
    by_area: dict[str, dict[str, list]] = {}
    for sample in samples:
        image = load_image(sample)
        masks = torch.from_numpy(sample.panoptic.load_masks())
        index = {seg.id: i for i, seg in enumerate(sample.panoptic.segments)}
        refs = sample.refs[:4]
        with torch.no_grad():
            if refs:
                phrases = [ref.sentences[0].sent for ref in refs]
                out = model([image], [GroundedSegmentation([phrases])])
                final = out.grounded_segmentation.final
                full = out.to_original(final.masks[0], 0)
                for t, ref in enumerate(refs):
                    target = masks[index[ref.ann_id]].bool()
                    ious, logits = _ious(full, target), final.logits[0, t]
                    _record(stats, "grounding", ious, logits)
                    area = by_area.setdefault(
                        _area_key(int(target.sum())), {"chosen": [], "oracle": [], "covers": []}
                    )
                    area["chosen"].append(float(ious[logits.argmax()]))
                    area["oracle"].append(float(ious.max()))
                    chosen = full[logits.argmax()]
                    segments = sample.panoptic.segments
                    area["covers"].append(
                        _covered(chosen, masks, segments, index[ref.ann_id], isthing)
                    )
            for k in range(min(2, len(masks))):
                target = masks[k].numpy().astype(bool)
                click = next_click(target, None)
                if click is None:
                    continue
                positive, _ = clicks_to_masks([click], target.shape)
                box = box_prompt(target, None)  # the filled bounding box
                for task, region in (("interactive", positive), ("box", box)):
                    prompt = VisualPrompt(positive=torch.from_numpy(region))
                    out = model([image], [InteractiveSegmentation([[prompt]])])
                    final = out.interactive_segmentation.final
                    full = out.to_original(final.masks[0], 0)
                    logits = final.logits[0, 0]
                    _record(stats, task, _ious(full, torch.from_numpy(target)), logits)
    num = model.interface.num_proposals
    result = {}
    for task, s in stats.items():
        if not s["chosen"]:
            continue
        result[task] = {
            "chosen_IoU": round(float(np.mean(s["chosen"])), 3),
            "oracle_IoU": round(float(np.mean(s["oracle"])), 3),
            "entropy": round(float(np.mean(s["entropy"])), 3),
            "targets": len(s["chosen"]),
        }
    if "grounding" in result:
        result["grounding"]["by_area"] = {
            key: {
                "chosen_IoU": round(float(np.mean(a["chosen"])), 3),
                "oracle_IoU": round(float(np.mean(a["oracle"])), 3),
                "targets": len(a["chosen"]),
                "covers": {c: round(a["covers"].count(c) / len(a["covers"]), 3) for c in COVERS},
            }
            for key, a in sorted(by_area.items())
        }
    if num:
        result["uniform_entropy"] = round(math.log(num), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(DEMO / "run"), help="a run directory")
    parser.add_argument("--data", default=str(DEMO / "data"), help="a dataset root (val split)")
    parser.add_argument("--images", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--click-agreement",
        type=float,
        default=None,
        metavar="W",
        help="the click-agreement weight to choose with (default: the model's)",
    )
    args = parser.parse_args()
    if not Path(args.run).is_dir():
        print(json.dumps({"skipped": f"no run at {args.run}: pass --run RUN --data DIR"}))
        return
    torch.set_num_threads(args.threads)
    model = load_run(args.run).model.eval()
    if args.click_agreement is not None:
        conventions = model.conventions
        model.conventions = dataclasses.replace(conventions, click_agreement=args.click_agreement)
    samples = load_dataset(args.data, "val")[: args.images]
    things = {c["id"] for c in _categories(args.data) if c.get("isthing")}
    result = measure(model, samples, isthing=things.__contains__)
    print(json.dumps({"run": args.run, "images": len(samples), **result}))


def _categories(root: str) -> list[dict]:
    path = Path(root) / "annotations" / "panoptic_val.json"
    return json.loads(path.read_text())["categories"] if path.is_file() else []


if __name__ == "__main__":
    main()
