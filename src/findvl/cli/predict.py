"""`findvl segment|ground|click IMAGE --checkpoint RUN`: one image, an overlay PNG and COCO RLE."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from findvl.cli.checks import check_device, check_output_file, numbers, unit_interval
from findvl.cli.evaluate import add_encoder_path_arguments, encoder_paths


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="an RGB image file")
    parser.add_argument("--checkpoint", type=Path, required=True, help="run or checkpoint dir")
    parser.add_argument(
        "--out", type=Path, default=None, help="output prefix (default: next to the image)"
    )
    parser.add_argument("--device", default="cpu")
    add_encoder_path_arguments(parser)


def register_segment(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--classes", nargs="+", help="vocabulary (default: the training classes)")
    parser.add_argument(
        "--threshold",
        type=unit_interval,
        default=None,
        help="minimum class score of a kept segment, in [0, 1] (default: "
        "findvl.postprocess.OBJECT_THRESHOLD, the value evaluation and the report use)",
    )
    parser.set_defaults(func=run_segment)


def register_ground(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--phrase", action="append", required=True, help="a referring phrase (repeatable)"
    )
    parser.set_defaults(func=run_ground)


def register_click(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--point", action="append", default=[], metavar="X,Y", help="positive click"
    )
    parser.add_argument(
        "--negative", action="append", default=[], metavar="X,Y", help="negative click"
    )
    parser.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box prompt")
    parser.set_defaults(func=run_click)


def _load(args):
    import torch

    from findvl.images import read_image
    from findvl.predictor import FindPredictor
    from findvl.runs import load_run

    if not args.image.is_file():
        raise FileNotFoundError(f"image: no such file: {args.image}")
    check_device(args.device)
    prefix = args.out or args.image.with_suffix("")
    check_output_file(Path(f"{prefix}.{args.func.__name__[4:]}.json"))
    image = read_image(args.image)
    run = load_run(args.checkpoint, device=args.device, **encoder_paths(args))
    predictor = FindPredictor(run.model)
    predictor.set_image(torch.from_numpy(image.copy()).permute(2, 0, 1))
    return image, run, predictor


def _write(args, image, masks, labels, extra_clicks=None) -> None:
    from findvl import viz
    from findvl.metrics.io import rle_to_json

    prefix = args.out or args.image.with_suffix("")
    picture = viz.overlay(image, masks, labels=labels)
    if extra_clicks:
        picture = viz.draw_clicks(picture, extra_clicks)
    png = viz.save(picture, f"{prefix}.{args.func.__name__[4:]}.png")
    records = [
        {"label": label, "segmentation": rle_to_json(m.numpy().astype(bool))}
        for label, m in zip(labels, masks)
    ]
    path = Path(f"{prefix}.{args.func.__name__[4:]}.json")
    path.write_text(json.dumps(records))
    print(json.dumps({"overlay": str(png), "masks": str(path), "count": len(records)}))


def run_segment(args: argparse.Namespace) -> int:
    from findvl.postprocess import OBJECT_THRESHOLD

    image, run, predictor = _load(args)
    classes = args.classes or run.class_names
    if not classes:
        raise ValueError("--classes: the checkpoint has no vocabulary; give class names")
    isthing = run.isthing if classes == run.class_names else None
    threshold = OBJECT_THRESHOLD if args.threshold is None else args.threshold
    result = predictor.segment(classes, isthing=isthing, object_threshold=threshold)
    masks = [result.segmentation == s["id"] for s in result.segments]
    labels = [classes[s["category"]] for s in result.segments]
    import torch

    stacked = torch.stack(masks) if masks else torch.zeros(0, *image.shape[:2], dtype=torch.bool)
    _write(args, image, stacked, labels)
    return 0


def run_ground(args: argparse.Namespace) -> int:
    image, _, predictor = _load(args)
    result = predictor.ground(args.phrase)
    _write(args, image, result.masks, args.phrase)
    return 0


def run_click(args: argparse.Namespace) -> int:
    from findvl.model.requests import VisualPrompt
    from findvl.model.sampler import rasterize

    if not args.point and not args.box:
        raise ValueError("--point/--box: give at least one positive click or a box")
    points = [numbers(p, "--point", 2) for p in args.point]
    box = numbers(args.box, "--box", 4) if args.box else None
    negatives = [numbers(p, "--negative", 2) for p in args.negative]
    image, _, predictor = _load(args)
    size = image.shape[:2]
    positive = rasterize(size, points=points, field="--point")
    if box is not None:
        positive |= rasterize(size, box=box, field="--box")
    negative = rasterize(size, points=negatives, field="--negative") if negatives else None
    result = predictor.click([VisualPrompt(positive, negative)])
    clicks = [(int(y), int(x), True) for x, y in points] + [
        (int(y), int(x), False) for x, y in negatives
    ]
    _write(args, image, result.masks, ["prompt"], clicks)
    return 0
