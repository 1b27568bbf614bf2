"""Do the pretrained towers bind attributes to objects? Zero-shot tests of an exported pair.

    python benchmarks/encoder_binding.py --encoders DIR --data DIR [--split val]
    python benchmarks/encoder_binding.py  # the quickstart's pair on a generated val split

``DIR`` holds ``synth-clip-vision/`` and ``synth-clip-text/`` as `findvl pretrain-encoders`
writes them (default: ``src/findvl/pretrained/resnet``). Without ``--data`` the val split of
``src/findvl/pretrained/README.md`` is generated into a temporary directory (100 images, seed 1).

For every caption of the split and every kind of hard negative
(:mod:`findvl.pretrain.negatives`: one shape or colour word replaced; colours, sizes or shapes
exchanged between two objects; a relation turned round) it prints how often the caption's
image scores the caption above the negative (chance 50%), and the mean cosine between the
caption's and the negative's sentence features (the text tower's projected end-of-text token;
near 1: the tower hardly tells them apart), besides zero-shot R@1. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.loading import load_language_encoder, load_vision_encoder
from findvl.pretrain.data import read_captioned, read_class_table, to_pretrain_data
from findvl.pretrain.evaluate import evaluate_exported
from findvl.pretrain.negatives import BINDING_KINDS, REPLACEMENT_KINDS, NegativeVocabulary

DEFAULT = Path(__file__).resolve().parents[1] / "src" / "findvl" / "pretrained" / "resnet"


@torch.no_grad()
def negative_cosines(text_dir: Path, data) -> dict[str, float]:
    """Mean cosine of each caption's sentence feature with its negative's, per kind."""
    from transformers import CLIPTextModelWithProjection

    text = CLIPTextModelWithProjection.from_pretrained(text_dir, local_files_only=True).eval()

    def embed(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = int(mask.sum(1).max())
        out = text(input_ids=ids[:, :length], attention_mask=mask[:, :length].long())
        return torch.nn.functional.normalize(out.text_embeds, dim=-1)

    out = {}
    for r, kind in enumerate(data.negative_kinds):
        made = data.negative_mask[:, r].any(1)
        captions = embed(data.caption_ids[made], data.caption_mask[made])
        negatives = embed(data.negative_ids[made, r], data.negative_mask[made, r])
        out[kind] = round((captions * negatives).sum(-1).mean().item(), 5)
    return out


def measure(encoders: Path, root: Path, split: str) -> dict:
    vision_dir, text_dir = encoders / "synth-clip-vision", encoders / "synth-clip-text"
    report = json.loads((encoders / "pretrain.json").read_text())
    vision = load_vision_encoder(vision_dir, longest_side=report["longest_side"])
    language = load_language_encoder(text_dir)
    shapes = tuple(NegativeVocabulary.synthetic().shapes)
    synthetic = NegativeVocabulary.synthetic()
    data = to_pretrain_data(
        read_captioned(root, split), tokenizer=language.tokenizer, norm=vision.norm,
        patch_size=4, grid_stride=4, classes=read_class_table(root, split),
        negatives=NegativeVocabulary(shapes, synthetic.colours, synthetic.sizes),
        negative_kinds=REPLACEMENT_KINDS + BINDING_KINDS,
    )  # fmt: skip
    metrics = evaluate_exported(vision_dir, text_dir, data)
    made = data.negative_mask.any(-1).sum(0).tolist()
    return {
        "encoders": str(encoders),
        "split": split,
        "images": metrics.images,
        "captions": metrics.captions,
        "i2t_r1": round(metrics.recall_at_1.image_to_text, 2),
        "t2i_r1": round(metrics.recall_at_1.text_to_image, 2),
        "negatives": dict(zip(data.negative_kinds, made, strict=True)),
        "negative_accuracy": metrics.negative_accuracy,
        "cos_caption_negative": negative_cosines(text_dir, data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", type=Path, default=DEFAULT)
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: generate)")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    if args.data is not None:
        print(json.dumps(measure(args.encoders, args.data, args.split)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = SynthConfig(Path(tmp), 100, seed=1, size=64, split="val", holdout_combos=True)
        write_synth(config, progress=False)
        print(json.dumps(measure(args.encoders, Path(tmp), "val")))


if __name__ == "__main__":
    main()
