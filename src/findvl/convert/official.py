"""Convert a released FIND checkpoint (``*.pt``) into a findvl run directory, strictly.

Every checkpoint key is either loaded into exactly one model tensor or named in the ignore list
of :mod:`findvl.convert.keys`; every model tensor is filled (except the findvl-only text
standardisation, left at identity, and the language model when it is read from its own
directory). Anything else, or a shape mismatch, is one ``ValueError`` naming the keys.
The file is read with ``torch.load(weights_only=True)``: tensors only, never pickled code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from findvl.config import ModelConfig
from findvl.convert.keys import FINDVL_ONLY, findvl_key, ignore_reason
from findvl.released import OFFICIAL_CONFIGS, RELEASED_PRESETS

#: How many keys of each kind an error line names before "... and N more".
SHOWN = 20


@dataclass
class Conversion:
    """The tensors to load and what was left out.

    Attributes:
        tensors: findvl key -> tensor (model dtype), one per filled model tensor.
        ignored: checkpoint key -> why it was not loaded.
        renamed: checkpoint key -> findvl key, for every loaded tensor.
    """

    tensors: dict[str, torch.Tensor]
    ignored: dict[str, str]
    renamed: dict[str, str]


def resolve_config(name: str) -> str:
    """An official config name (``focalt_llama_lang``, with or without ``.yaml``) or a released
    preset name -> the preset name; ``ValueError`` listing the choices otherwise."""
    stem = Path(name).name.removesuffix(".yaml")
    if stem in OFFICIAL_CONFIGS:
        return OFFICIAL_CONFIGS[stem]
    if stem in RELEASED_PRESETS:
        return stem
    raise ValueError(
        f"--config {name!r}: expected an official FIND config ({', '.join(OFFICIAL_CONFIGS)}) "
        f"or a released preset ({', '.join(RELEASED_PRESETS)})"
    )


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a released checkpoint (a flat ``{key: tensor}``, or one nested under
    ``model`` / ``state_dict``), read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {path}: not a readable weights-only file ({first})") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(data, dict) and set(data) == {wrapper} and isinstance(data[wrapper], dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"checkpoint {path}: expected a dict of tensors")
    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint {path}: entries that are not tensors: {_names(bad)}")
    return {k.removeprefix("module."): v for k, v in data.items()}


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN])
    return f"[{shown}{f', ... and {len(keys) - SHOWN} more' if len(keys) > SHOWN else ''}]"


def convert_state_dict(
    official: dict[str, torch.Tensor],
    model: nn.Module,
    *,
    external_language: bool,
    source: str = "checkpoint",
) -> Conversion:
    """Map ``official`` onto ``model``'s state dict, strictly.

    Args:
        official: the released checkpoint's tensors.
        model: the findvl model built from the matching preset.
        external_language: the language model is read from its own directory (LLaMA): its
            checkpoint weights are ignored and ``language.*`` need not be filled.
        source: names the checkpoint in the error.

    Raises:
        ValueError: one line naming unknown, unfilled, duplicated or mis-shaped keys.
    """
    expected = model.state_dict()
    skip = ("language.",) if external_language else ()
    tensors: dict[str, torch.Tensor] = {}
    ignored, renamed = {}, {}
    unknown, unexpected, duplicated, mismatched = [], [], [], []
    for key, value in official.items():
        reason = ignore_reason(key, external_language=external_language)
        if reason is not None:
            ignored[key] = reason
            continue
        target = findvl_key(key)
        if target is None:
            unknown.append(key)
        elif target not in expected or target.startswith(skip):
            unexpected.append(f"{key} (as {target})")
        elif target in tensors:
            duplicated.append(f"{key} (as {target})")
        elif tuple(value.shape) != tuple(expected[target].shape):
            mismatched.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[target].shape)}"
            )
        else:
            tensors[target] = value.to(expected[target].dtype)
            renamed[key] = target
    missing = [
        k for k in expected if k not in tensors and k not in FINDVL_ONLY and not k.startswith(skip)
    ]
    problems = []
    for label, keys in (
        ("checkpoint keys with no findvl name and not in the ignore list", unknown),
        ("checkpoint keys the model does not have", unexpected),
        ("checkpoint keys mapping to the same tensor", duplicated),
        ("shape mismatches", mismatched),
        ("model tensors the checkpoint does not fill", missing),
    ):
        if keys:
            problems.append(f"{len(keys)} {label} {_names(keys)}")
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return Conversion(tensors, ignored, renamed)


def load_converted(model: nn.Module, conversion: Conversion) -> None:
    """Copy the converted tensors into ``model`` (the rest keeps its values)."""
    result = model.load_state_dict(conversion.tensors, strict=False)
    if result.unexpected_keys:  # convert_state_dict guarantees none; keep the promise visible
        raise ValueError(f"unexpected keys {_names(list(result.unexpected_keys))}")


def converted_config(preset: str, *, language: str | None, tokenizer: str | None) -> ModelConfig:
    """The preset's config with the text tower's directory set (absolute path).

    LLaMA presets need ``language`` (the model directory); UniCL presets need ``tokenizer``
    (a CLIP BPE tokenizer directory). A missing or superfluous one is a ``ValueError``.
    """
    config = RELEASED_PRESETS[preset]()
    if config.language.kind == "hf":
        if not language:
            raise ValueError(f"--language: {preset} reads LLaMA features; give its directory")
        if tokenizer:
            raise ValueError(f"--tokenizer: {preset} uses the tokenizer of --language")
        path = language
    else:
        if not tokenizer:
            raise ValueError(f"--tokenizer: {preset} needs a CLIP BPE tokenizer directory")
        if language:
            raise ValueError(f"--language: {preset} has its text tower in the checkpoint")
        path = tokenizer
    flag = "--language" if language else "--tokenizer"
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{flag}: no directory {path}")
    language_config = dataclasses.replace(config.language, path=str(Path(path).resolve()))
    return dataclasses.replace(config, language=language_config)
