"""Which captions does image-text retrieval fail on? Recall@1 by the caption's place in its image.

    python benchmarks/retrieval_by_caption.py --run RUN --data DIR [--images 100] [--split train]
    python benchmarks/retrieval_by_caption.py        # make demo's run, runs/quickstart

Every val image and every caption is embedded as ``findvl evaluate`` embeds them (one
caption per image per forward; captions attend only their own tokens, so the image a caption
rides with does not matter). Caption -> image R@1 is given for all captions and separately
for the k-th caption of each image: the synthetic world writes an image's captions in a fixed
order (0: what and over which backgrounds, with counts; 1: every shape with its colour; 2: one
relation between two shapes), so k tells which kind of caption is found and which is not.
``--split train`` measures the same on training images (the quickstart's train split is
generated with the val split's colour x shape pairs held out): what training reached, against
what carries over to new combinations.
Image -> caption R@1 counts a hit when the best caption is any of the image's own. The swap
accuracy asks whether the model binds colours to shapes: how often an image scores its own
caption above the same caption with two colours swapped (chance 50%), and the cosine of a
caption and its swap for the interface's caption query and for the frozen text tower's
sentence feature (its end-of-text token): near 1, a bag of words. One JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from findvl.data.hard_negatives import swap_colours
from findvl.data.readers.dataset import load_dataset
from findvl.evaluation.common import load_image
from findvl.model.requests import ImageTextRetrieval
from findvl.runs import load_run

DEMO = Path("runs/quickstart")
BATCH = 10


@torch.no_grad()
def embed(model, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image embeddings ``[I,P]``; caption embeddings ``[C,P]``, each caption's image index and
    its place among its image's captions (``[C]`` each)."""
    images, captions, owner, place = [], [], [], []
    for start in range(0, len(samples), BATCH):
        batch = samples[start : start + BATCH]
        pixels = [load_image(s) for s in batch]
        for k in range(max(len(s.captions) for s in batch)):
            texts = [s.captions[k] if k < len(s.captions) else "a photo" for s in batch]
            final = model(pixels, [ImageTextRetrieval(texts)]).image_text_retrieval.final
            if k == 0:
                images.append(final.image.float())
            for b, s in enumerate(batch):
                if k < len(s.captions):
                    captions.append(final.query[b].float())
                    owner.append(start + b)
                    place.append(k)
    unit = torch.nn.functional.normalize
    return (
        unit(torch.cat(images), dim=-1).numpy(),
        unit(torch.stack(captions), dim=-1).numpy(),
        np.array(owner),
        np.array(place),
    )


@torch.no_grad()
def swap_accuracy(model, samples, images: np.ndarray) -> dict:
    """How often an image scores its own caption above the same caption with two colours
    swapped (:func:`findvl.data.hard_negatives.swap_colours`), by caption place (chance 50%),
    and the mean cosine of a caption and its swap (caption query; frozen text tower)."""
    wins: dict[int, list[bool]] = {}
    cosines: dict[str, list[float]] = {"caption query": [], "frozen text tower": []}
    for start in range(0, len(samples), BATCH):
        batch = samples[start : start + BATCH]
        pixels = [load_image(s) for s in batch]
        for k in range(max(len(s.captions) for s in batch)):
            pairs = [
                (b, s.captions[k], swap_colours(s.captions[k]))
                for b, s in enumerate(batch)
                if k < len(s.captions)
            ]
            pairs = [p for p in pairs if p[2] is not None and p[2] not in batch[p[0]].captions]
            if not pairs:
                continue
            texts = ["a photo"] * len(batch)
            more = [[] for _ in batch]
            for b, true, swapped in pairs:
                texts[b], more[b] = true, [swapped]
            final = model(pixels, [ImageTextRetrieval(texts, more)]).image_text_retrieval.final
            unit = torch.nn.functional.normalize
            query, swaps = unit(final.query.float(), dim=-1), unit(final.more[:, 0].float(), dim=-1)
            frozen = model.language.encode([t for _, t, w in pairs for t in (t, w)])
            last = frozen.features[torch.arange(len(frozen.mask)), frozen.mask.sum(1) - 1]
            last = unit(last.float(), dim=-1)
            for i, (b, _, _) in enumerate(pairs):
                image = torch.from_numpy(images[start + b])
                wins.setdefault(k, []).append(bool(image @ query[b] > image @ swaps[b]))
                cosines["caption query"].append(float(query[b] @ swaps[b]))
                cosines["frozen text tower"].append(float(last[2 * i] @ last[2 * i + 1]))
    return {
        **{
            f"swap accuracy caption {k}": round(100 * float(np.mean(v)), 1)
            for k, v in sorted(wins.items())
        },
        **{f"cos(caption, swap) {k}": round(float(np.mean(v)), 5) for k, v in cosines.items()},
    }


def measure(model, samples) -> dict:
    images, captions, owner, place = embed(model, samples)
    scores = captions @ images.T  # [C,I]
    hit = scores.argmax(1) == owner
    result = {"IR@1": round(100 * float(hit.mean()), 1)}
    for k in sorted(set(place.tolist())):
        result[f"IR@1 caption {k}"] = round(100 * float(hit[place == k].mean()), 1)
    best = scores.argmax(0)  # per image, its best caption
    result["TR@1"] = round(100 * float((owner[best] == np.arange(len(images))).mean()), 1)
    return result | swap_accuracy(model, samples, images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEMO / "run")
    parser.add_argument("--data", type=Path, default=DEMO / "data")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    model = load_run(args.run).model.eval()
    samples = load_dataset(args.data, args.split)[: args.images]
    print(
        json.dumps(
            {
                "run": str(args.run),
                "split": args.split,
                "images": len(samples),
                **measure(model, samples),
            }
        )
    )


if __name__ == "__main__":
    main()
