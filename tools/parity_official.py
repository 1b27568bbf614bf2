"""Parity of findvl with the official FIND code on seeded random weights.

Usage::

    python tools/parity_official.py --official /path/to/FIND [--configs focalt_unicl_lang ...]
        [--size 640] [--tokenizer DIR] [--golden DIR]

``--official`` is a checkout of UX-Decoder/FIND (commit 521c934). Its modules run unmodified
with the stand-ins of ``official_stubs``. For each config the official head (pixel decoder,
FIND decoder, text tower) is built with seeded random weights and saved as an official-format
``.pt``; ``findvl convert`` turns it into a run directory, which is loaded like any run. Both
models then read the same backbone features (random, seeded; the backbones have their own
parity check, ``tools/parity_backbones.py``) and the same texts and prompts, and the max
absolute and relative (``max|a-b| / max|b|``) difference of every output of every task is
printed (``--floor`` adds findvl against itself on features perturbed by 1e-7 relative).
The UniCL configs run by default: their text tower is in the checkpoint. The decoder of the
LLaMA configs is the same; their text path (the official encoder's vendored LLaMA needs
transformers 4.34) is checked against Hugging Face ``output_hidden_states`` in the test suite.

``--golden DIR`` instead writes the shrunk fixture ``DIR/find_unicl_small.safetensors`` (the
official state dict, the inputs and the official outputs) checked by
``tests/convert/test_parity_golden.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

import official_models  # noqa: E402
import official_runner  # noqa: E402
import parity_findvl  # noqa: E402

from findvl.encoders.unicl_text import load_clip_tokenizer  # noqa: E402
from findvl.model.conventions import class_text  # noqa: E402
from findvl.model.slots import splice_visual_entities  # noqa: E402

SHIPPED_TOKENIZER = ROOT / "src" / "findvl" / "pretrained" / "synth-clip-text"

#: Shrunk sizes of the golden fixture (a few hundred kB).
SHRINK = dict(
    dim=64, heads=4, ffn=128, dec_layers=3, queries=8, enc_layers=1, memories=4,
    text_width=64, text_layers=2, text_heads=4,
)  # fmt: skip
SMALL_CHANNELS = {"res2": 32, "res3": 48, "res4": 64, "res5": 96}

prompts_for = parity_findvl.prompts_for

CLASSES = ["person", "wall-other-merged", "red circle", "sky-other-merged"]
PHRASES = ["a red circle", "the blue square on the left"]
CAPTION = "a red circle next to a blue square"


def randomize_(module: nn.Module, seed: int) -> None:
    """Seeded random weights of a healthy scale (norm weights near 1, biases near 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5)
            elif name.endswith("logit_scale"):
                p.fill_(math.log(120.0))  # above the grounding cap of 100: the cap is exercised
            elif "norm" in name and name.endswith("weight") or ".ln_" in name and "weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def official_state(head: nn.Module) -> dict[str, torch.Tensor]:
    """The head's weights under released-checkpoint names (plus a training buffer)."""
    state = {f"sem_seg_head.{k}": v.clone() for k, v in head.state_dict().items()}
    state["criterion.empty_weight"] = torch.ones(134)
    return state


def random_features(channels: dict[str, int], height: int, width: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(1, c, height // 2 ** (i + 2), width // 2 ** (i + 2), generator=g)
        for i, (name, c) in enumerate(channels.items())
    }


def official_outputs(head, cfg, features, height, width) -> dict[str, torch.Tensor]:
    length = cfg["MODEL"]["TEXT"]["CONTEXT_LENGTH"]
    class_length = cfg["MODEL"]["DECODER"]["MASK"]["CLASS_TOKEN_LENGTH"]
    names = [class_text(n, "describe") for n in [*CLASSES, "background"]]
    table = official_runner.class_embeddings(head, names, class_length)
    generic = official_runner.generic(head, features, table)
    grounding = official_runner.grounding(head, features, PHRASES, length)
    prompts = parity_findvl.prompts_for(height, width)
    interactive = official_runner.interactive(head, features, prompts)
    retrieval = official_runner.retrieval(head, features, CAPTION, length)
    item = parity_findvl.interleaved(prompts[1])
    sentence, spans = splice_visual_entities(item, "interleave")
    regions = [None if e.reference is None else e.reference.prompt.positive for e in item.entities]
    fast = load_clip_tokenizer(head.predictor.lang_encoder.tokenizer.name_or_path)
    inter = official_runner.interleave(head, features, sentence, spans, regions, length, fast)
    return {
        "interleave.scores": inter["scores"],
        "interleave.masks": inter["masks"],
        "interleave.legend": inter["legend"],
        "interleave.image": inter["image"],
        "generic.logits": generic["logits"],
        "generic.masks": generic["masks"],
        "generic.class_embeddings": table,
        "grounding.scores": grounding["scores"],
        "grounding.masks": grounding["masks"],
        "interactive.scores": interactive["scores"],
        "interactive.masks": interactive["masks"],
        "retrieval.image": retrieval["image"],
        "retrieval.caption": retrieval["caption"],
    }


def task_inputs(height: int, width: int) -> dict:
    return {
        "classes": CLASSES,
        "phrases": PHRASES,
        "prompts": parity_findvl.prompts_for(height, width),
        "caption": CAPTION,
        "interleave": parity_findvl.prompts_for(height, width)[1],
    }


def build_official(checkout, name, channels, tokenizer, shrink, seed):
    cfg = official_models.official_config(checkout, name, shrink)
    torch.manual_seed(seed)
    head = official_models.build_official_head(cfg, channels, str(tokenizer))
    randomize_(head, seed)
    return cfg, head.eval()


def converted_pair(checkout, name: str, tokenizer, seed: int):
    """``(official config, official head, findvl model, backbone channels)`` with the same
    seeded random weights: the official head as :func:`build_official` makes it, saved with a
    random backbone as a released checkpoint and turned into a findvl run by ``findvl convert``
    (the global random state is left as the head's build left it).
    """
    from findvl.convert.run import convert_checkpoint
    from findvl.encoders.backbones import BACKBONES, CONFIG_BACKBONE
    from findvl.runs import load_run

    backbone = BACKBONES[CONFIG_BACKBONE[name]]()
    channels = dict(backbone.out_channels)
    cfg, head = build_official(checkout, name, channels, tokenizer, None, seed)
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
        state = official_state(head)
        randomize_(backbone, seed + 2)
        state.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
        torch.save(state, Path(tmp) / "official.pt")
        vocab = head.predictor.lang_encoder.tokenizer.vocab_size
        convert_checkpoint(
            Path(tmp) / "official.pt",
            config=name,
            out=Path(tmp) / "run",
            tokenizer=str(tokenizer),
            overrides=[f"language.vocab_size={vocab}"],
        )
        model = load_run(Path(tmp) / "run").model
    return cfg, head, model, channels


def print_table(name: str, size: int, table: dict, floor: dict | None = None) -> None:
    print(f"\n{name} at {size}x{size}")
    if floor is None:
        print("| output | max abs | max rel |\n|---|---|---|")
    else:
        print("| output | max abs | max rel | floor: findvl, 1e-7 input noise |")
        print("|---|---|---|---|")
    for key, (diff, rel) in table.items():
        extra = "" if floor is None else f" {floor[key][1]:.2e} |"
        print(f"| {key} | {diff:.2e} | {rel:.2e} |{extra}")


def run_full(args) -> int:
    worst = 0.0
    for name in args.configs:
        size = args.size or (1024 if name.startswith(("focalt", "samb")) else 640)
        cfg, head, model, channels = converted_pair(args.official, name, args.tokenizer, args.seed)
        features = random_features(channels, size, size, args.seed + 1)
        official = official_outputs(head, cfg, features, size, size)
        model.vision = parity_findvl.FixedFeatures(features)
        image = parity_findvl.image_of(size, size)
        mine = parity_findvl.run_tasks(model, image, task_inputs(size, size))
        table = parity_findvl.differences(official, mine)
        floor = None
        if args.floor:
            # the same findvl model on features changed by 1e-7 relative: how far float
            # rounding alone moves each output (thresholded mask attention amplifies it)
            g = torch.Generator().manual_seed(args.seed + 3)
            noisy = {
                k: v * (1 + 1e-7 * torch.randn(v.shape, generator=g)) for k, v in features.items()
            }
            model.vision = parity_findvl.FixedFeatures(noisy)
            again = parity_findvl.run_tasks(model, image, task_inputs(size, size))
            floor = parity_findvl.differences(mine, again)
        print_table(name, size, table, floor)
        worst = max([worst] + [rel for _, rel in table.values()])
    print(f"\nworst relative difference: {worst:.2e}")
    return 0


def write_golden(args) -> int:
    name, size = "focalt_unicl_lang", 64
    cfg, head = build_official(
        args.official, name, SMALL_CHANNELS, args.tokenizer, SHRINK, args.seed
    )
    features = random_features(SMALL_CHANNELS, size, size, args.seed + 1)
    official = official_outputs(head, cfg, features, size, size)
    tensors = {f"weights.{k}": v.contiguous() for k, v in official_state(head).items()}
    tensors.update({f"features.{k}": v.contiguous() for k, v in features.items()})
    tensors.update({f"official.{k}": v.contiguous() for k, v in official.items()})
    meta = {
        "config": name,
        "shrink": SHRINK,
        "channels": SMALL_CHANNELS,
        "size": size,
        "vocab_size": head.predictor.lang_encoder.tokenizer.vocab_size,
        "inputs": {"classes": CLASSES, "phrases": PHRASES, "caption": CAPTION},
        "official_commit": "521c934",
    }
    from safetensors.torch import save_file

    out = Path(args.golden)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "find_unicl_small.safetensors"), {"meta": json.dumps(meta)})
    print(f"wrote {out / 'find_unicl_small.safetensors'} ({len(tensors)} tensors)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="FIND checkout")
    parser.add_argument(
        "--configs", nargs="+", default=[c for c in official_models.CONFIGS if "unicl" in c]
    )
    parser.add_argument("--size", type=int, default=None, help="image side (default 1024 for "
                        "Focal-T and SAM, 640 otherwise)")  # fmt: skip
    parser.add_argument("--tokenizer", type=Path, default=SHIPPED_TOKENIZER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--golden", type=Path, default=None, help="write the fixture here")
    parser.add_argument(
        "--floor", action="store_true", help="also measure findvl against itself on features "
        "perturbed by 1e-7 relative (the float-rounding floor of each output)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    official_models.install(args.official)
    torch.set_grad_enabled(False)
    return write_golden(args) if args.golden else run_full(args)


if __name__ == "__main__":
    raise SystemExit(main())
