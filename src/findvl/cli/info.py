"""``findvl info``: load a vision and a language encoder, run one forward each, report."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass


@dataclass
class LevelInfo:
    """One feature level: name, stride, channels and the shape produced for the test image."""

    name: str
    stride: int
    channels: int
    shape: list[int]


@dataclass
class VisionInfo:
    """The vision encoder: pixel batch shape ``[1,3,H,W]``, levels, parameters, forward time."""

    model_type: str
    input_shape: list[int]
    levels: list[LevelInfo]
    params_frozen: int
    params_trainable: int
    forward_s: float


@dataclass
class LanguageInfo:
    """The language encoder: ``layer`` (None: last hidden state), ``[1,L,D]`` features, timing."""

    model_type: str
    dim: int
    layer: int | None
    feature_shape: list[int]
    params_frozen: int
    params_trainable: int
    forward_s: float


@dataclass
class EncoderInfo:
    """What ``findvl info --json`` prints."""

    vision: VisionInfo
    language: LanguageInfo


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vision",
        required=True,
        metavar="PATH",
        help="Hugging Face vision model directory (sam, dinov2, clip) or 'tiny'",
    )
    parser.add_argument(
        "--language",
        required=True,
        metavar="PATH",
        help="Hugging Face causal LM or CLIP directory, or 'tiny'",
    )
    parser.add_argument(
        "--language-layer",
        type=int,
        default=None,
        metavar="N",
        help="hidden_states index of a causal LM (default -12, or -1 if shallower)",
    )
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="dtype the foundation models run in (features are fp32)",
    )
    parser.add_argument(
        "--longest-side",
        type=int,
        default=None,
        metavar="N",
        help="resize the generated 480x640 image to this longest side (default: the encoder's)",
    )
    parser.add_argument(
        "--sentence",
        default="a dog sits on the grass next to a red car",
        help="the text encoded once",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)  # fmt: skip


def _count(module) -> tuple[int, int]:
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return frozen, trainable


def vision_info(encoder) -> VisionInfo:
    """One forward of a generated 480x640 RGB image through ``encoder``."""
    import torch

    from findvl.encoders.preprocess import preprocess_images

    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=generator)
    pixels = preprocess_images([image], encoder.norm).pixels
    encoder.eval()
    with torch.no_grad():
        start = time.perf_counter()
        features = encoder.forward_features(pixels)
        elapsed = time.perf_counter() - start
    levels = [
        LevelInfo(lv.name, lv.stride, lv.channels, list(features[lv.name].shape))
        for lv in encoder.levels
    ]
    frozen, trainable = _count(encoder)
    return VisionInfo(encoder.model_type, list(pixels.shape), levels, frozen, trainable, elapsed)


def language_info(encoder, sentence: str) -> LanguageInfo:
    """One ``encode([sentence])`` through ``encoder``."""
    import torch

    encoder.eval()
    with torch.no_grad():
        start = time.perf_counter()
        out = encoder.encode([sentence])
        elapsed = time.perf_counter() - start
    frozen, trainable = _count(encoder)
    layer = getattr(encoder, "layer", None)
    return LanguageInfo(
        encoder.model_type, encoder.dim, layer, list(out.features.shape), frozen, trainable, elapsed
    )


def load_encoders(args: argparse.Namespace) -> tuple:
    from findvl.encoders.language import TinyLanguageEncoder
    from findvl.encoders.loading import load_language_encoder, load_vision_encoder
    from findvl.encoders.vision import TinyBackbone

    if args.vision == "tiny":
        vision = TinyBackbone()
    else:
        vision = load_vision_encoder(args.vision, dtype=args.dtype, longest_side=args.longest_side)
    if args.language == "tiny":
        language = TinyLanguageEncoder()
    else:
        language = load_language_encoder(args.language, layer=args.language_layer, dtype=args.dtype)
    return vision, language


def format_text(info: EncoderInfo) -> str:
    v, lang = info.vision, info.language
    lines = [
        f"vision    {v.model_type}  input {tuple(v.input_shape)}  "
        f"forward {v.forward_s * 1e3:.1f} ms",
        f"          params frozen {v.params_frozen:,}  trainable {v.params_trainable:,}",
    ]
    for lv in v.levels:
        lines.append(f"          {lv.name}  stride {lv.stride:>2}  channels {lv.channels:>4}  "
                     f"shape {tuple(lv.shape)}")  # fmt: skip
    layer = "last_hidden_state" if lang.layer is None else f"hidden_states[{lang.layer}]"
    lines += [
        f"language  {lang.model_type}  dim {lang.dim}  features {layer}  "
        f"shape {tuple(lang.feature_shape)}  forward {lang.forward_s * 1e3:.1f} ms",
        f"          params frozen {lang.params_frozen:,}  trainable {lang.params_trainable:,}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from findvl.cli import CliError

    try:
        vision, language = load_encoders(args)
    except OSError as error:  # e.g. weights missing from a directory that has a config.json
        if isinstance(error, FileNotFoundError):
            raise
        raise CliError(str(error).splitlines()[0]) from None
    info = EncoderInfo(vision=vision_info(vision), language=language_info(language, args.sentence))
    print(json.dumps(asdict(info)) if args.json else format_text(info))
    return 0
