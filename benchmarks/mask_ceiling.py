"""Mask-resolution ceiling of the synthetic world: the best IoU a stride-4 mask can reach.

    python benchmarks/mask_ceiling.py                 # val splits at 64, 96 and 128 px
    python benchmarks/mask_ceiling.py --sizes 64 --images 50

Every ground-truth segment is downsampled to stride 4 (antialiased), upsampled back (bilinear)
and thresholded at 0.5; its IoU with the original is what a perfect stride-4 mask head could
score. Prints one JSON object per image size (things and stuff separately).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from findvl.data.readers.dataset import load_dataset
from findvl.data.synth.write import SynthConfig, write_synth


def stride4_iou(mask: np.ndarray) -> float:
    """IoU of ``[H,W]`` bool ``mask`` with its stride-4 round trip."""
    x = torch.from_numpy(mask).float()[None, None]
    low = F.interpolate(x, scale_factor=0.25, mode="bilinear", antialias=True)
    back = F.interpolate(low, size=mask.shape, mode="bilinear")[0, 0] > 0.5
    gt = torch.from_numpy(mask)
    return float((back & gt).sum() / (back | gt).sum())


def ceiling(root: Path) -> dict[str, float]:
    ious: dict[bool, list[float]] = {True: [], False: []}
    for sample in load_dataset(root, "val"):
        masks = sample.panoptic.load_masks()
        for segment, mask in zip(sample.panoptic.segments, masks):
            ious[segment.isthing].append(stride4_iou(mask))
    things, stuff = np.array(ious[True]), np.array(ious[False])
    return {
        "things_mean_iou": round(float(things.mean()), 3),
        "things_frac_iou_ge_0.85": round(float(np.mean(things >= 0.85)), 2),
        "things_frac_iou_ge_0.5": round(float(np.mean(things >= 0.5)), 2),
        "stuff_mean_iou": round(float(stuff.mean()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            root = Path(tmp) / str(size)
            write_synth(
                SynthConfig(
                    out=root,
                    images=args.images,
                    seed=args.seed,
                    size=size,
                    split="val",
                    holdout_combos=True,
                ),
                progress=False,
            )
            print(json.dumps({"size": size, **ceiling(root)}))


if __name__ == "__main__":
    main()
