"""``findvl convert OFFICIAL.pt --config NAME --out RUN``: a released FIND checkpoint -> a run.

The output is a findvl run directory that ``findvl segment|ground|click|evaluate`` load.
Conversion is strict (see :mod:`findvl.convert.official`): a checkpoint that does not match the
architecture stops with one line naming the keys, and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="released checkpoint (.pt)")
    parser.add_argument(
        "--config",
        required=True,
        help="official config (e.g. focalt_llama_lang, focalt_unicl_lang, samb_llama_lang) or "
        "released preset (find_focalt, find_focalt_unicl, ...)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory to create")
    parser.add_argument("--language", default=None, help="LLaMA configs: the LLaMA directory")
    parser.add_argument(
        "--tokenizer", default=None, help="UniCL configs: a CLIP BPE tokenizer directory"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a model config key (e.g. language.dtype=fp16)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from findvl.convert.run import convert_checkpoint

    result = convert_checkpoint(
        args.checkpoint,
        config=args.config,
        out=args.out,
        language=args.language,
        tokenizer=args.tokenizer,
        overrides=args.overrides,
    )
    print(
        f"converted {args.checkpoint} as {result.preset}: {result.loaded} tensors loaded, "
        f"{len(result.ignored)} ignored -> {result.checkpoint}"
    )
    return 0
