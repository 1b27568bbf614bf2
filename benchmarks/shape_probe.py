"""Do a frozen image tower's features tell the synthetic shapes and colours apart? Linear probes.

    python benchmarks/shape_probe.py                          # the shipped tower
    python benchmarks/shape_probe.py --vision DIR --train 1000 --val 100

FIND reads a frozen backbone's levels; what they do not encode, the interface cannot classify.
For every level of stride >= 4 the features of each cell whose majority class is a shape are
standardised and a linear classifier over the 8 shapes (plus the other classes) is fitted
on ``--train`` training images (Adam, full batch); its accuracy on the val cells is printed as
one JSON line per level (chance 12.5% among the shapes). A second probe on the same cells
tells the colour of the shape in the cell (the majority among its thing pixels, each pixel
counted for the nearest of the world's 8 colours; chance 12.5%): FIND's queries read the
deep levels, so what they do not carry (which shape is red) grounding cannot use. A CLIP ViT
is read at its patch grid; a hierarchical tower (RegNet, ConvNeXt) at each of its levels.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from findvl.data.synth.world import COLOURS
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.hf_vision import FrozenViTEncoder
from findvl.encoders.loading import load_language_encoder, load_vision_encoder
from findvl.pretrain.data import read_captioned, read_class_table, to_pretrain_data
from findvl.pretrain.losses import pool_counts

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "findvl" / "pretrained"


def level_features(encoder, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: [B,C,h,w]}``: a ViT's patch grid, or a hierarchical tower's levels."""
    with torch.no_grad():
        if isinstance(encoder, FrozenViTEncoder):
            return {"grid": encoder.grid(pixels)}
        return encoder.forward_features(pixels)


def shape_cells(
    features: torch.Tensor, counts: torch.Tensor, thing: torch.Tensor, colours: torch.Tensor
):
    """``[B,C,h,w]`` features, ``[B,(h*w),K]`` class and ``[B,(h*w),1+8]`` colour counts ->
    the shape cells' ``[M,C]`` features, ``[M]`` classes and ``[M]`` colours (0..7)."""
    x = features.flatten(2).transpose(1, 2).reshape(-1, features.shape[1])
    label = counts.reshape(-1, counts.shape[-1]).argmax(-1)
    keep = thing[label] & (counts.reshape(-1, counts.shape[-1]).sum(-1) > 0)
    colour = colours.reshape(-1, colours.shape[-1])[:, 1:].argmax(-1)
    return x[keep], label[keep], colour[keep]


def probe(train: tuple, val: tuple, classes: int, steps: int = 300) -> float:
    """Accuracy (percent) of a linear classifier fitted on ``train`` cells, on ``val`` cells."""
    (a, ya), (b, yb) = train, val
    mean, std = a.mean(0), a.std(0) + 1e-5
    a, b = (a - mean) / std, (b - mean) / std
    linear = nn.Linear(a.shape[1], classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(linear(a), ya)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return 100.0 * (linear(b).argmax(-1) == yb).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vision", type=Path, default=SHIPPED / "synth-clip-vision")
    parser.add_argument("--text", type=Path, default=SHIPPED / "synth-clip-text")
    parser.add_argument("--data", type=Path, help="synthetic world (default: generated)")
    parser.add_argument("--train", type=int, default=1000, help="training images of the probe")
    parser.add_argument("--val", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp)
            for split, n, seed in (("train", args.train, 0), ("val", args.val, 1)):
                write_synth(
                    SynthConfig(root, n, seed=seed, size=64, split=split, holdout_combos=True),
                    progress=False,
                )
        report = json.loads((args.vision.parent / "pretrain.json").read_text()) if (
            args.vision.parent / "pretrain.json").is_file() else {}  # fmt: skip
        stride = report.get("grid_stride") or 4
        side_in = report.get("longest_side") or 64  # a ResNet reads the images at 128 px
        encoder = load_vision_encoder(args.vision, longest_side=side_in, grid_stride=stride)
        tokenizer = load_language_encoder(args.text).tokenizer
        classes = read_class_table(root, "train")
        thing = torch.tensor(classes.isthing)

        def load(split: str, count: int):
            return to_pretrain_data(
                read_captioned(root, split)[:count], tokenizer=tokenizer, norm=encoder.norm,
                patch_size=4, grid_stride=4, classes=classes, palette=tuple(COLOURS.values()),
            )  # fmt: skip

        train, val = load("train", args.train), load("val", args.val)
        chunks = [
            level_features(encoder, train.pixels[i : i + 100]) for i in range(0, len(train), 100)
        ]
        val_features = level_features(encoder, val.pixels)
        grid = round(val.patch_counts.shape[1] ** 0.5)  # the label grid: 4x4 input pixels
        for name, features in val_features.items():
            side = features.shape[-1]
            if side > grid:  # finer than the label grid
                continue
            factor = grid // side
            x, shape, colour = shape_cells(
                torch.cat([c[name] for c in chunks]), pool_counts(train.patch_counts, factor),
                thing, pool_counts(train.patch_colours, factor),
            )  # fmt: skip
            vx, vshape, vcolour = shape_cells(
                features, pool_counts(val.patch_counts, factor), thing,
                pool_counts(val.patch_colours, factor),
            )  # fmt: skip
            accuracy = probe((x, shape), (vx, vshape), len(classes.names))
            colour_accuracy = probe((x, colour), (vx, vcolour), len(COLOURS))
            print(json.dumps({
                "vision": str(args.vision), "model_type": encoder.model_type, "level": name,
                "stride": 64 // side, "shape_cells": len(vshape),
                "shape_accuracy": round(accuracy, 1), "colour_accuracy": round(colour_accuracy, 1),
                "chance": 12.5,
            }))  # fmt: skip


if __name__ == "__main__":
    main()
