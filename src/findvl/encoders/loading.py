"""Load frozen vision/language encoders from local Hugging Face directories (never downloads).

The directory's ``config.json`` ``model_type`` picks the adapter. ``HF_HUB_OFFLINE=1`` is set and
every ``from_pretrained`` call gets ``local_files_only=True``, so a missing file is an error
naming the directory, never a download.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from findvl.encoders.hf_hierarchical import HierarchicalAdapter
from findvl.encoders.hf_language import (
    CausalLMEncoder,
    ClipTextEncoder,
    prepare_tokenizer,
    resolve_layer,
)
from findvl.encoders.hf_vision import (
    ClipVisionAdapter,
    Dinov2Adapter,
    FrozenViTEncoder,
    SamVisionAdapter,
)
from findvl.encoders.language import LanguageEncoder
from findvl.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageNorm

VISION_TYPES = (
    "sam",
    "sam_vision_model",
    "dinov2",
    "dinov2_with_registers",
    "clip",
    "clip_vision_model",
    "regnet",
    "resnet",
    "convnext",
)
HIERARCHICAL_TYPES = ("regnet", "resnet", "convnext")
CLIP_TEXT_TYPES = ("clip", "clip_text_model")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# CLIP's published pixel statistics on the 0..255 scale (used when the directory has none)
CLIP_MEAN = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)
DEFAULT_LONGEST_SIDE = 1024


def read_model_config(path: str | Path, *, role: str) -> tuple[Path, dict]:
    """Return ``(directory, config.json contents)``; clear errors naming the path otherwise."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{role} encoder directory not found: {directory}")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_file}: malformed JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ValueError(f"{config_file}: missing string field 'model_type'")
    return directory, config


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``'fp32' | 'bf16' | 'fp16'`` (or a torch dtype among those) -> ``torch.dtype``."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported (expected one of {sorted(DTYPES)})")
    return DTYPES[dtype]


@contextlib.contextmanager
def offline_quiet() -> Iterator[None]:
    """Force the hub offline and silence transformers' load-time warnings and progress bars,
    for the load only (``HF_HUB_OFFLINE`` and the logging settings are restored on exit).

    The warnings would list the weights of the decoder layers deliberately left out.
    """
    offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from transformers.utils import logging

        level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        try:
            yield
        finally:
            logging.set_verbosity(level)
            if bars:
                logging.enable_progress_bar()
    finally:  # the caller's environment is left as it was
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline


def model_identity(directory: Path, config: dict) -> str:
    """A string that changes when the checkpoint does: resolved path + hash of config.json."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return f"{config['model_type']}@{directory.resolve()}#{digest}"


def image_norm_for(directory: Path, *, family: str, longest_side: int | None) -> ImageNorm:
    """Mean/std from ``preprocessor_config.json`` if present, else the family's known values."""
    mean, std = (CLIP_MEAN, CLIP_STD) if family == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
    file = directory / "preprocessor_config.json"
    if file.is_file():
        try:
            pre = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{file}: malformed JSON ({error})") from None
        if "image_mean" in pre and "image_std" in pre:
            mean = tuple(float(v) * 255.0 for v in pre["image_mean"])
            std = tuple(float(v) * 255.0 for v in pre["image_std"])
            if len(mean) != 3 or len(std) != 3:
                raise ValueError(f"{file}: image_mean/image_std must have 3 values")
    return ImageNorm(mean=mean, std=std, longest_side=longest_side, pad_multiple=32)


def load_vision_encoder(
    path: str | Path,
    *,
    out_channels: int = 256,
    longest_side: int | None = None,
    dtype: str | torch.dtype = "fp32",
    grid_stride: int = 16,
    finest_stride: int = 4,
) -> FrozenViTEncoder | HierarchicalAdapter:
    """Load SAM / DINOv2 / CLIP vision weights from ``path`` as a frozen pyramid encoder, or
    a hierarchical RegNet / ConvNeXt as a frozen multi-level encoder (its own maps are the
    levels; ``out_channels``, ``grid_stride`` and ``finest_stride`` do not apply).

    Args:
        path: local directory with ``config.json`` and weights (a full ``SamModel`` or
            ``CLIPModel`` directory works: only its vision tower is loaded).
        out_channels: channels of the trainable pyramid's levels.
        longest_side: resize target of the preprocessing; default SAM's ``image_size``,
            else 1024.
        dtype: the backbone's dtype (the features are float32).
        grid_stride: input pixels per backbone patch (16, or 4/8 for small images).
        finest_stride: stride of the pyramid's finest level (4, or 2 for small images).
    """
    directory, config = read_model_config(path, role="vision")
    model_type, torch_dtype = config["model_type"], parse_dtype(dtype)
    if model_type not in VISION_TYPES:
        raise ValueError(
            f"{directory}: model_type {model_type!r} is not a supported vision encoder "
            f"(expected {', '.join(VISION_TYPES)})"
        )
    kwargs = {"local_files_only": True, "dtype": torch_dtype}
    with offline_quiet():
        import transformers

        if model_type in HIERARCHICAL_TYPES:
            backbone = transformers.AutoModel.from_pretrained(directory, **kwargs)
            norm = image_norm_for(
                directory, family="imagenet", longest_side=longest_side or DEFAULT_LONGEST_SIDE
            )
            return HierarchicalAdapter(backbone=backbone, norm=norm, model_type=model_type)
        if model_type.startswith("sam"):
            backbone = transformers.SamVisionModel.from_pretrained(
                directory, **kwargs
            ).vision_encoder
            side = longest_side or backbone.config.image_size
            adapter, channels, family = SamVisionAdapter, backbone.config.output_channels, "sam"
        elif model_type.startswith("dinov2"):
            backbone = transformers.AutoModel.from_pretrained(directory, **kwargs)
            side = longest_side or DEFAULT_LONGEST_SIDE
            adapter, channels, family = Dinov2Adapter, backbone.config.hidden_size, "dinov2"
        else:
            backbone = transformers.CLIPVisionModel.from_pretrained(directory, **kwargs)
            side = longest_side or DEFAULT_LONGEST_SIDE
            adapter, channels, family = ClipVisionAdapter, backbone.config.hidden_size, "clip"
    return adapter(
        backbone=backbone,
        grid_channels=channels,
        norm=image_norm_for(directory, family=family, longest_side=side),
        out_channels=out_channels,
        model_type=model_type,
        grid_stride=grid_stride,
        finest_stride=finest_stride,
    )


def load_language_encoder(
    path: str | Path,
    *,
    layer: int | None = None,
    dtype: str | torch.dtype = "fp32",
    max_length: int = 77,
) -> LanguageEncoder:
    """Load a causal LM or a CLIP text tower from ``path`` as a frozen language encoder.

    Args:
        path: local directory with ``config.json``, weights and a fast tokenizer.
        layer: causal LMs only: the ``hidden_states`` index to read (negative allowed);
            default -12 (the official FIND setting) or the last entry when the model has fewer
            than 12 layers. CLIP towers always use ``last_hidden_state``.
        dtype: the model's dtype (the features are float32).
        max_length: longest token sequence, special tokens included.
    """
    directory, config = read_model_config(path, role="language")
    model_type, torch_dtype = config["model_type"], parse_dtype(dtype)
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    with offline_quiet():
        import transformers

        if model_type not in CLIP_TEXT_TYPES and not _is_decoder_only(directory):
            raise ValueError(
                f"{directory}: model_type {model_type!r} is not a supported language encoder "
                f"(expected a decoder-only causal LM such as llama, or "
                f"{', '.join(CLIP_TEXT_TYPES)})"
            )
        identity = f"{model_identity(directory, config)}|len={max_length}|{torch_dtype}"
        tokenizer = prepare_tokenizer(
            transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True),
            path=str(directory),
        )
        kwargs = {"local_files_only": True, "dtype": torch_dtype}
        if model_type in CLIP_TEXT_TYPES:
            if layer is not None:
                raise ValueError(f"{directory}: layer selection applies to causal LMs, not CLIP")
            model = transformers.CLIPTextModel.from_pretrained(directory, **kwargs)
            return ClipTextEncoder(
                model=model, tokenizer=tokenizer, max_length=max_length,
                cache_key=identity, model_type=model_type,
            )  # fmt: skip
        model, layer = _load_truncated_lm(directory, layer=layer, **kwargs)
    return CausalLMEncoder(
        model=model, tokenizer=tokenizer, layer=layer, max_length=max_length,
        cache_key=f"{identity}|layer={layer}", model_type=model_type,
    )  # fmt: skip


def _is_decoder_only(directory: Path) -> bool:
    """True for causal LMs that are neither encoder-decoder nor masked-LM encoders (BERT)."""
    import transformers
    from transformers.models.auto import modeling_auto

    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    return (
        config.model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and config.model_type not in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not getattr(config, "is_encoder_decoder", False)
    )


def _load_truncated_lm(directory: Path, *, layer: int | None, **kwargs) -> tuple:
    """Load the base model with only the decoder layers up to ``hidden_states[layer]``."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    total = config.num_hidden_layers
    layer = (-12 if total >= 12 else -1) if layer is None else layer
    keep = resolve_layer(layer, total)
    config.num_hidden_layers = keep
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:keep]
    model = transformers.AutoModel.from_pretrained(directory, config=config, **kwargs)
    if not isinstance(getattr(model, "layers", None), torch.nn.ModuleList) or not hasattr(
        model, "norm"
    ):
        raise ValueError(
            f"{directory}: {type(model).__name__} has no 'layers'/'norm' (decoder layout expected)"
        )
    if keep < total:  # hidden_states[k < N] is the raw layer output: no final norm
        model.norm = torch.nn.Identity()
    return model, layer
