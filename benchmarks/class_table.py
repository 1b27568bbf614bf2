"""Are the class embeddings of the synthetic shapes apart? And are things classified?

    python benchmarks/class_table.py                        # find_synth at initialisation
    python benchmarks/class_table.py --preset find_synth_vit
    python benchmarks/class_table.py --run RUN --data DIR   # a trained run, 20 val images

Prints one JSON line: the mean cosine between the class embeddings of the 8 thing classes
(1.0: one embedding for all, the softmax cannot tell them apart), things against stuff, and
with ``--run`` and ``--data``: for every ground-truth segment of the first ``--images`` val
images, the proposal with the best mask IoU, whether its top class is right and its top
class probability (the object threshold is 0.8).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from findvl.build import build_preset
from findvl.data.readers.coco import read_panoptic
from findvl.data.readers.dataset import DatasetPaths, load_dataset
from findvl.evaluation.common import load_image
from findvl.model.requests import GenericSegmentation
from findvl.postprocess import to_original
from findvl.runs import load_run

SYNTH_CLASSES = ["circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond",
                 "grass", "water", "sand", "brick"]  # fmt: skip
THINGS = 8


def class_cosines(model, names: list[str]) -> dict[str, float]:
    with torch.no_grad():
        table = F.normalize(model.class_embeddings(names)[: len(names)], dim=-1)
    cos = table @ table.T
    things = cos[:THINGS, :THINGS]
    return {
        "things_mean_cos": round(((things.sum() - THINGS) / (THINGS * (THINGS - 1))).item(), 3),
        "things_stuff_mean_cos": round(cos[:THINGS, THINGS:].mean().item(), 3),
    }


def thing_classification(model, names: list[str], root: str, images: int) -> dict[str, float]:
    """Best-IoU proposal of every thing segment: class right? top probability?"""
    paths = DatasetPaths.standard(root, "val")
    _, categories = read_panoptic(paths.panoptic_json, paths.panoptic_dir, paths.image_dir)
    category_name = {c.id: c.name for c in categories}
    right, probability, count = 0, 0.0, 0
    for sample in load_dataset(root, "val")[:images]:
        image = load_image(sample)
        with torch.no_grad():
            out = model([image], [GenericSegmentation(names)])
        final = out.generic_segmentation.final
        masks = to_original(
            final.masks[0], input_size=out.input_sizes[0], canvas=out.canvas,
            original_size=tuple(image.shape[-2:]),
        ) > 0  # fmt: skip
        probs = final.logits[0].softmax(-1)
        truths = sample.panoptic.load_masks()
        for segment, truth in zip(sample.panoptic.segments, truths):
            name = category_name[segment.category_id]
            if name not in names[:THINGS]:
                continue
            truth = torch.from_numpy(truth)
            inter = (masks & truth).flatten(1).sum(1)
            union = (masks | truth).flatten(1).sum(1).clamp(min=1)
            best = (inter / union).argmax()
            right += int(probs[best].argmax().item() == names.index(name))
            probability += probs[best].max().item()
            count += 1
    return {"things": count, "class_right": right, "mean_top_probability": round(
        probability / max(1, count), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="find_synth")
    parser.add_argument("--run", help="a trained run or checkpoint instead of a fresh preset")
    parser.add_argument("--data", help="dataset root with a val split (with --run)")
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = (load_run(args.run).model if args.run else build_preset(args.preset)).eval()
    result = {"model": args.run or f"{args.preset} (initialisation)"}
    result.update(class_cosines(model, SYNTH_CLASSES))
    if args.run and args.data:
        result.update(thing_classification(model, SYNTH_CLASSES, args.data, args.images))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
