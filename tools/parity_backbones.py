"""Parity of findvl's backbones with the official FIND modules, and the golden fixtures.

Usage::

    python tools/parity_backbones.py --official /path/to/FIND [--real] [--fixtures DIR]

``--official`` is a checkout of UX-Decoder/FIND (commit 521c934); its files
``modeling/vision/backbone/{focal,focal_dw,davit,vit}.py`` are imported unmodified, with small
stand-ins for the detectron2 / timm / einops names they import (defined below, never in the
package). For each backbone, the official module is built (the real sizes from the official
``configs/find/*.yaml``, or shrunk widths/depths), given seeded random weights, its state dict is
loaded into findvl's module by key name (strict: same keys, same shapes), both run on the same
image, and the max abs / max relative difference (``max|a-b| / max|b|``) per output level is
printed. Weights and input are rounded to fp16-representable values, so ``--fixtures DIR`` can
store them as fp16 without loss: one ``.safetensors`` per shrunk config (input, ``weight.*`` under
the official names, ``output.*`` of the official module in fp32, and the findvl class and
keyword arguments in the metadata). Exit status 1 if a relative difference exceeds 1e-5.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import types
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from findvl.encoders.backbones import DaViT, FocalNet, SamViT  # noqa: E402

PACKAGE = "official_find_backbone"
FAMILIES = {"FocalNet": FocalNet, "DaViT": DaViT, "SamViT": SamViT}

# ---------------------------------------------------------------- stand-ins for imports


class _Backbone(nn.Module):
    """detectron2's ``Backbone``: an ``nn.Module`` base (only subclassed here)."""


class _ShapeSpec:
    def __init__(self, channels=None, height=None, width=None, stride=None) -> None:
        self.channels, self.height, self.width, self.stride = channels, height, width, stride


class _DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the identity at inference, which is all that is compared here


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _rearrange(x: torch.Tensor, pattern: str, **sizes) -> torch.Tensor:
    """The two einops patterns DaViT's ``ConvEmbed`` uses."""
    if pattern == "b (h w) c -> b c h w":
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], sizes["h"], sizes["w"])
    if pattern == "b c h w -> b (h w) c":
        return x.flatten(2).transpose(1, 2)
    raise NotImplementedError(pattern)


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def import_official(checkout: Path) -> dict[str, types.ModuleType]:
    """Import the official backbone files of ``checkout`` (not their package ``__init__``)."""
    folder = checkout / "modeling" / "vision" / "backbone"
    if not (folder / "focal_dw.py").is_file():
        sys.stderr.write(f"--official: {checkout} has no modeling/vision/backbone/focal_dw.py\n")
        raise SystemExit(2)
    _stub("detectron2")
    _stub("detectron2.utils")
    _stub("detectron2.utils.file_io", PathManager=None)
    _stub("detectron2.modeling", BACKBONE_REGISTRY=None, Backbone=_Backbone, ShapeSpec=_ShapeSpec)
    _stub("timm")
    _stub("timm.models")
    _stub(
        "timm.models.layers",
        DropPath=_DropPath,
        to_2tuple=_to_2tuple,
        trunc_normal_=nn.init.trunc_normal_,
    )
    _stub("einops", rearrange=_rearrange)
    _stub(PACKAGE, __path__=[str(folder)], __package__=PACKAGE)
    return {
        n: importlib.import_module(f"{PACKAGE}.{n}") for n in ("focal_dw", "focal", "davit", "vit")
    }


# ---------------------------------------------------------------- configs


def config_section(checkout: Path, config: str) -> dict:
    import yaml

    text = (checkout / "configs" / "find" / f"{config}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["MODEL"]["BACKBONE"]


def focal_case(official, checkout, *, real: bool, depthwise: bool) -> tuple[nn.Module, dict]:
    config = "focalt_llama_lang" if depthwise else "focall_llama_lang"
    spec = copy.deepcopy(config_section(checkout, config))
    if not real:
        spec["FOCAL"].update(EMBED_DIM=4, DEPTHS=[1, 1, 2, 1])
    focal = spec["FOCAL"]
    module = official["focal_dw" if depthwise else "focal"].D2FocalNet({"BACKBONE": spec}, 224)
    kwargs = {
        "embed_dim": focal["EMBED_DIM"],
        "depths": list(focal["DEPTHS"]),
        "focal_levels": list(focal["FOCAL_LEVELS"]),
        "focal_windows": list(focal["FOCAL_WINDOWS"]),
        "depthwise": depthwise,
        "mlp_ratio": focal["MLP_RATIO"],
    }
    return module, {"family": "FocalNet", "kwargs": kwargs}


def davit_case(official, checkout, *, real: bool, variant: str) -> tuple[nn.Module, dict]:
    spec = copy.deepcopy(config_section(checkout, f"{variant}_llama_lang"))
    if not real:
        spec["DAVIT"].update(
            DIM_EMBED=[4, 8, 16, 32], NUM_HEADS=[1, 2, 2, 4], NUM_GROUPS=[1, 2, 2, 4],
            DEPTHS=[1, 1, 2, 1],
        )  # fmt: skip
    d = spec["DAVIT"]
    module = official["davit"].D2DaViT({"BACKBONE": spec}, 224)
    kwargs = {
        "embed_dims": list(d["DIM_EMBED"]),
        "depths": list(d["DEPTHS"]),
        "num_heads": list(d["NUM_HEADS"]),
        "num_groups": list(d["NUM_GROUPS"]),
        "patch_size": list(d["PATCH_SIZE"]),
        "patch_stride": list(d["PATCH_STRIDE"]),
        "patch_padding": list(d["PATCH_PADDING"]),
        "patch_prenorm": list(d["PATCH_PRENORM"]),
        "window": d.get("WINDOW_SIZE", 7),
    }
    return module, {"family": "DaViT", "kwargs": kwargs}


def sam_case(official, checkout, *, real: bool) -> tuple[nn.Module, dict]:
    vit = official["vit"]
    if real:
        spec = config_section(checkout, "samb_llama_lang")
        module = vit.D2ViT({"BACKBONE": spec}, 224)
        kwargs = {
            "img_size": 1024, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
            "window": 14, "global_blocks": [2, 5, 8, 11], "out_dims": [128, 256, 512, 1024],
        }  # fmt: skip
    else:  # D2ViT's construction with small sizes: SAM's ViT, then FIND's neck replaces SAM's
        kwargs = {
            "img_size": 64, "patch_size": 8, "embed_dim": 16, "depth": 3, "num_heads": 2,
            "window": 3, "global_blocks": [1], "out_dims": [4, 8, 16, 32],
        }  # fmt: skip
        from functools import partial

        module = vit.ImageEncoderViT(
            img_size=kwargs["img_size"], patch_size=kwargs["patch_size"],
            embed_dim=kwargs["embed_dim"], depth=kwargs["depth"], num_heads=kwargs["num_heads"],
            mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=kwargs["global_blocks"],
            window_size=kwargs["window"], out_chans=256,
        )  # fmt: skip
        module.neck = vit.SimpleFPN(in_dim=kwargs["embed_dim"], out_dims=kwargs["out_dims"])
    return module, {"family": "SamViT", "kwargs": kwargs}


CASES = {
    "focalt": lambda o, c, real: focal_case(o, c, real=real, depthwise=True),
    "focall": lambda o, c, real: focal_case(o, c, real=real, depthwise=False),
    "davitd3": lambda o, c, real: davit_case(o, c, real=real, variant="davitd3"),
    "davitd5": lambda o, c, real: davit_case(o, c, real=real, variant="davitd5"),
    "samb": lambda o, c, real: sam_case(o, c, real=real),
}

# ---------------------------------------------------------------- weights, runs, comparison


def randomize_(module: nn.Module, seed: int) -> None:
    """Seeded random values for every tensor, scaled so every branch changes the output.

    (The official inits would leave e.g. FocalNet's layer scales at 1e-4 and SAM's relative
    position tables at zero, hiding those paths from the comparison.)
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator)
            if "pos_embed" in name:
                value = 0.5 * noise
            elif tensor.dim() >= 2:
                value = noise / max(1, tensor[0].numel()) ** 0.5
            elif name.endswith("weight"):
                value = 1 + 0.1 * noise
            else:
                value = 0.2 * noise
            tensor.copy_(value.half().float())  # fp16-exact, so fixtures store fp16


def build_findvl(description: dict) -> nn.Module:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in description["kwargs"].items()}
    return FAMILIES[description["family"]](**kwargs)


def load_by_name(target: nn.Module, source: dict[str, torch.Tensor]) -> None:
    """Strict 1:1 load; exit with the differing keys / shapes named."""
    mine = target.state_dict()
    missing, extra = sorted(set(mine) - set(source)), sorted(set(source) - set(mine))
    shapes = [k for k in mine if k in source and mine[k].shape != source[k].shape]
    if missing or extra or shapes:
        raise SystemExit(f"key mismatch: missing {missing} extra {extra} shape {shapes}")
    target.load_state_dict(source, strict=True)


def compare(official: dict, mine: dict) -> dict[str, tuple[float, float]]:
    """``{level: (max abs diff, max abs diff / max |official|)}``."""
    if list(official) != list(mine):
        raise SystemExit(f"levels differ: official {list(official)} findvl {list(mine)}")
    result = {}
    for level, ref in official.items():
        if ref.shape != mine[level].shape:
            raise SystemExit(
                f"{level}: official {tuple(ref.shape)} findvl {tuple(mine[level].shape)}"
            )
        diff = (ref - mine[level]).abs().max().item()
        result[level] = (diff, diff / ref.abs().max().clamp_min(1e-30).item())
    return result


def input_size(name: str, real: bool, size: int) -> tuple[int, int]:
    if name == "samb":
        return (1024, 1024) if real else (64, 64)
    return (size, size) if real else (32, 64)


def run_case(official_modules, checkout, name, *, real, size, batch, seed):
    reference, description = CASES[name](official_modules, checkout, real)
    reference.eval()
    randomize_(reference, seed)
    weights = {k: v.clone() for k, v in reference.state_dict().items()}
    mine = build_findvl(description).eval()
    load_by_name(mine, weights)
    generator = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn(batch, 3, *input_size(name, real, size), generator=generator)
    pixels = pixels.half().float()  # fp16-exact, so fixtures store fp16
    with torch.no_grad():
        ref_out = {k: v.float() for k, v in reference(pixels).items()}
        del reference
        my_out = mine(pixels)
    return description, pixels, weights, ref_out, compare(ref_out, my_out)


def write_fixture(path: Path, name, description, pixels, weights, outputs) -> None:
    from safetensors.torch import save_file

    tensors = {"input": pixels.half(), **{f"weight.{k}": v.half() for k, v in weights.items()}}
    tensors.update({f"output.{k}": v for k, v in outputs.items()})
    metadata = {
        "backbone": name,
        "family": description["family"],
        "kwargs": json.dumps(description["kwargs"]),
        "source": "UX-Decoder/FIND 521c934",
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, type=Path, help="a FIND checkout")
    parser.add_argument("--real", action="store_true", help="also the released sizes")
    parser.add_argument("--size", type=int, default=256, help="image side for --real")
    parser.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--fixtures", type=Path, help="write the shrunk fixtures here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    official_modules = import_official(args.official.expanduser().resolve())
    checkout = args.official.expanduser().resolve()
    if args.fixtures:
        args.fixtures.mkdir(parents=True, exist_ok=True)
    print(f"{'backbone':10} {'sizes':7} {'input':>12} {'level':6} {'max abs':>10} {'max rel':>10}")
    worst = 0.0
    for real in [False, True] if args.real else [False]:
        for name in args.only:
            batch = 1 if real else 2
            description, pixels, weights, outputs, diffs = run_case(
                official_modules, checkout, name, real=real, size=args.size, batch=batch,
                seed=args.seed,
            )  # fmt: skip
            shape = "x".join(str(s) for s in pixels.shape[-2:])
            for level, (diff, rel) in diffs.items():
                worst = max(worst, rel)
                tag = "real" if real else "shrunk"
                print(f"{name:10} {tag:7} {batch}x{shape:>10} {level:6} {diff:10.2e} {rel:10.2e}")
            if args.fixtures and not real:
                write_fixture(args.fixtures / f"{name}.safetensors", name, description, pixels,
                              weights, outputs)  # fmt: skip
            sys.stdout.flush()
    print(f"worst relative difference: {worst:.2e}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
