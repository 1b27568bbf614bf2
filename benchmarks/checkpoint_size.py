"""Bytes written per checkpoint: every state tensor (the former format) vs the model file.

    python benchmarks/checkpoint_size.py                    # find_tiny, find_synth, find_sam_llama

For each preset it builds the model, takes one AdamW step (so the optimizer holds its moments)
and saves the same state twice with :func:`findvl.train.checkpoint.save_checkpoint`: once with
every state tensor in ``model.safetensors`` (how checkpoints were written before the model
file), once as a model file (learned weights only, frozen foundation models referenced by path
and hash). ``find_sam_llama`` runs on the tiny random SAM / LLaMA directories the tests write
(its interface is the full FIND-T one); ``--sam-base`` adds a row over a random SAM ViT-B of
the real size (written locally, nothing downloaded). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from findvl.build import build_model, preset_config  # noqa: E402
from findvl.model_file import foundations  # noqa: E402
from findvl.train.checkpoint import save_checkpoint  # noqa: E402
from findvl.train.optim import OptimizerConfig, build_optimizer  # noqa: E402


def _sam_base(directory: Path) -> Path:
    """A randomly initialised SAM ViT-B directory (``SamConfig()`` is ViT-B: 1024², 12 layers)."""
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    SamModel(SamConfig()).save_pretrained(directory)
    return directory


def _encoder_paths(name: str, scratch: Path, *, sam_base: bool):
    """Config with local encoder directories for presets that need them (tiny random ones;
    ``sam_base``: a random SAM ViT-B of the real size)."""
    config = preset_config(name)
    if name != "find_sam_llama":
        return config
    from tiny_checkpoints import write_tiny_llama, write_tiny_sam

    sam = _sam_base(scratch / "sam-b") if sam_base else write_tiny_sam(scratch / "sam")
    llama = write_tiny_llama(scratch / "llama", num_layers=12)
    return dataclasses.replace(
        config,
        vision=dataclasses.replace(
            config.vision, path=str(sam), longest_side=1024 if sam_base else 64
        ),
        language=dataclasses.replace(config.language, path=str(llama)),
    )


def _bytes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}


def measure(name: str, scratch: Path, *, sam_base: bool = False) -> dict:
    config = _encoder_paths(name, scratch, sam_base=sam_base)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-4, clip_grad_norm=0.0))
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    result = {"preset": name + (" (SAM ViT-B)" if sam_base else "")}
    for label, kwargs in (("before", {}), ("after", {"model_config": config})):
        start = time.perf_counter()
        step = save_checkpoint(
            scratch / f"{name}-{label}", step=1, model=model, optimizer=optimizer, **kwargs
        )
        files = _bytes(step)
        result[label] = {
            "model_bytes": files["model.safetensors"],
            "checkpoint_bytes": sum(files.values()),
            "save_seconds": round(time.perf_counter() - start, 3),
        }
    prefixes = tuple(f.prefix for f in foundations(config))
    frozen = sum(
        v.numel() * v.element_size()
        for k, v in model.state_dict().items()
        if k.startswith(prefixes)
    )
    result["foundation_bytes_in_memory"] = frozen
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    presets = ["find_tiny", "find_synth", "find_sam_llama"]
    parser.add_argument("--presets", nargs="+", default=presets)
    parser.add_argument(
        "--sam-base", action="store_true", help="also find_sam_llama over a random SAM ViT-B"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, Path(tmp)) for name in args.presets]
        if args.sam_base:
            rows.append(measure("find_sam_llama", Path(tmp), sam_base=True))
    print(json.dumps({"checkpoint_size": rows}, indent=1))


if __name__ == "__main__":
    main()
