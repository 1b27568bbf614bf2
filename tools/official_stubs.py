"""Minimal stand-ins for the libraries the official FIND modules import (detectron2, fvcore,
timm, torchvision), so those modules run unmodified on CPU with plain PyTorch.

Only what the decoder, pixel decoder and text encoders touch at build and inference time is
implemented; everything else is an inert placeholder. ``install(checkout)`` registers the stubs
and the official packages (``modeling``, ``utils``) as namespace modules, so their package
``__init__`` files (which import training code, CUDA ops and datasets) are never executed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
from torch import nn


class _Inert(nn.Module):
    """A module the official code builds at import time but never calls here."""

    def forward(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is a stub")


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


class _Placeholder:
    """Any class the official code imports but never uses on the paths exercised here."""

    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError(f"{type(self).__name__} is a stub")


class Conv2d(nn.Conv2d):
    """detectron2's Conv2d: a conv followed by optional ``norm`` and ``activation`` modules."""

    def __init__(self, *args, norm=None, activation=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def get_norm(norm, channels: int):
    if norm is None or norm == "":
        return None
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    if norm == "LN":
        return nn.LayerNorm(channels)
    raise ValueError(f"stub get_norm: unsupported norm {norm!r}")


class ShapeSpec:
    def __init__(self, channels=None, height=None, width=None, stride=None) -> None:
        self.channels, self.height, self.width, self.stride = channels, height, width, stride


def cat(tensors, dim: int = 0) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


def shapes_to_tensor(x, device=None) -> torch.Tensor:
    return torch.as_tensor(x, device=device)


def c2_xavier_fill(module: nn.Module) -> None:
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_msra_fill(module: nn.Module) -> None:
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        return x  # inference only


def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def install(checkout: str | Path) -> None:
    """Register the stubs and make ``modeling`` / ``utils`` of ``checkout`` importable."""
    checkout = Path(checkout).resolve()
    if not (checkout / "modeling" / "interface" / "find.py").is_file():
        raise FileNotFoundError(f"--official: {checkout} is not a FIND checkout")
    import transformers  # noqa: F401  (before the torchvision stub: it probes for torchvision)
    from transformers import CLIPTokenizer  # noqa: F401

    d2 = _module("detectron2")
    layers = _module(
        "detectron2.layers",
        Conv2d=Conv2d,
        get_norm=get_norm,
        ShapeSpec=ShapeSpec,
        cat=cat,
        shapes_to_tensor=shapes_to_tensor,
        DeformConv=_Placeholder,
    )
    structures = _module(
        "detectron2.structures",
        BitMasks=_Placeholder,
        Boxes=_Placeholder,
        Instances=_Placeholder,
        ROIMasks=_Placeholder,
        ImageList=_Placeholder,
    )
    comm = _module("detectron2.utils.comm", get_world_size=lambda: 1, is_main_process=lambda: True)
    d2_utils = _module("detectron2.utils", comm=comm)
    d2.layers, d2.structures, d2.utils = layers, structures, d2_utils
    weight_init = _module(
        "fvcore.nn.weight_init", c2_xavier_fill=c2_xavier_fill, c2_msra_fill=c2_msra_fill
    )
    fv_nn = _module("fvcore.nn", weight_init=weight_init)
    _module("fvcore", nn=fv_nn)
    timm_layers = _module(
        "timm.models.layers", trunc_normal_=trunc_normal_, DropPath=DropPath, to_2tuple=to_2tuple
    )
    _module("timm.models", layers=timm_layers)
    _module("timm.loss", SoftTargetCrossEntropy=_Inert)
    _module("timm", models=sys.modules["timm.models"], loss=sys.modules["timm.loss"])
    _module("omegaconf", DictConfig=dict)
    _module("einops", rearrange=_Placeholder, repeat=_Placeholder)
    world = types.SimpleNamespace(Get_rank=lambda: 0, Get_size=lambda: 1)
    _module("mpi4py", MPI=types.SimpleNamespace(COMM_WORLD=world))
    boxes = _module("torchvision.ops.boxes", box_area=_Placeholder)
    _module("torchvision.ops", boxes=boxes)
    _module("torchvision", ops=sys.modules["torchvision.ops"], __version__="0.0")
    for package in (
        "modeling",
        "modeling.interface",
        "modeling.vision",
        "modeling.vision.encoder",
        "modeling.language",
        "modeling.language.LangEncoder",
        "modeling.modules",
        "utils",
    ):
        path = checkout / package.replace(".", "/")
        _module(package, __path__=[str(path)], __package__=package)
    # the official packages re-export these from their __init__ files; provide the subset used
    sys.path.insert(0, str(checkout))
    from modeling.modules import point_features, position_encoding  # noqa: F401

    modules = sys.modules["modeling.modules"]
    modules.PositionEmbeddingSine = position_encoding.PositionEmbeddingSine
    modules.point_sample = point_features.point_sample
