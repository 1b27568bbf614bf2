"""Model configuration: small dataclasses composed by a parent, saved with every checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

#: Where the vision encoder comes from (see :class:`VisionConfig`).
VisionKind = Literal["tiny", "hf", "official"]
#: Released FIND backbones (``vision.kind == "official"``).
Backbone = Literal["focalt", "focall", "davitd3", "davitd5", "samb"]
#: Where the language encoder comes from (see :class:`LanguageConfig`).
LanguageKind = Literal["tiny", "hf", "unicl"]
#: Compute dtype of a frozen pretrained encoder.
Dtype = Literal["fp32", "bf16", "fp16"]
#: Prototype variant (:mod:`findvl.prototypes`): the released weights' rules or Table 1.
Variant = Literal["official", "paper"]
#: Interactive and visual-interleave scores: raw dot products or ``exp(logit_scale)·cos``.
PixelScores = Literal["dot", "cosine"]
#: Where a prompt pixel lands in the canvas (:mod:`findvl.model.sampler`).
PointConvention = Literal["center", "official"]
#: Text embedded for a class: the bare name or the official description prompt.
ClassPrompt = Literal["name", "describe"]
ClassTable = Literal["interface", "text"]
ImageQuery = Literal["pooled", "attended"]
GroundingQuery = Literal["interface", "text"]


@dataclass
class VisionConfig:
    kind: VisionKind = "tiny"  # "tiny" (built-in, not pretrained), "hf" (a local HF dir) or
    # "official" (a released FIND backbone, weights from a converted checkpoint)
    path: str | None = None  # the local directory when kind == "hf"
    backbone: Backbone | None = None  # kind == "official": focalt, focall, davitd3, davitd5 or samb
    widths: tuple[int, int, int, int] = (32, 48, 64, 96)  # tiny backbone channels of res2..res5
    longest_side: int | None = None  # resize images so the longer side is this (None: keep)
    pyramid_channels: int = 256  # hf only: channels of the (trainable) simple feature pyramid
    dtype: Dtype = "fp32"  # hf only: compute dtype of the frozen backbone (fp32, bf16, fp16)
    grid_stride: int = 16  # hf ViTs only: input pixels per patch (4/8 keep small images dense)
    finest_stride: int = 4  # hf ViTs only: stride of res2 (2: every level one octave finer)
    trainable: bool = True  # tiny only; a pretrained (hf) backbone is always frozen


@dataclass
class LanguageConfig:
    kind: LanguageKind = "tiny"  # "tiny" (hash tokenizer + small transformer), "hf" (local dir) or
    # "unicl" (the UniCL text tower of the released FIND UniCL configs; weights from a converted
    # checkpoint, CLIP BPE tokenizer from ``path``)
    path: str | None = None  # the local directory when kind == "hf"; the tokenizer for "unicl"
    layer: int | None = -12  # hidden_states index used as features (paper ablation; causal LMs)
    max_length: int = 77  # tokens per text, BOS included
    dtype: Dtype = "fp32"  # compute dtype of a pretrained LM (fp32, bf16, fp16)
    dim: int = 64  # tiny encoder width
    num_layers: int = 1  # tiny (and unicl) encoder depth
    num_heads: int = 8  # unicl only: attention heads
    vocab_size: int = 49408  # unicl only: token table rows (the CLIP BPE vocabulary)
    trainable: bool = True  # tiny only; a pretrained (hf) language model is always frozen
    # init std of lang_proj; None: 1/sqrt(feature dim), so unit-variance token features project
    # to unit-variance tokens, as large as the learned queries they are added to and attended
    # by (0.02, the official value, is that rule for a ~2.5k-wide LLM; for a 64-wide encoder it
    # makes every text token ~8x smaller than the queries and all captions/phrases look alike)
    proj_init_std: float | None = None
    # False freezes lang_proj at its random start (a full-rank map of the whitened features).
    # Measured on the quickstart: it does not keep the shape classes apart (their embeddings
    # collapse in the interface's class pass, see conventions.class_table), so it stays on
    proj_trainable: bool = True
    # initial log temperature of every cosine score (official: 1.0, i.e. scale e; released
    # weights bring their learned value). With scale e, K classes at cos 0 and the right one
    # at cos 1, the best class probability is 1/(1+K/e): below the 0.8 object threshold for
    # K >= 1, so short runs keep no segment at all. ln(1/0.07) is CLIP's start.
    logit_scale_init: float = 1.0
    # None (official): generic segmentation's class scores share that temperature; else their
    # own. Measured on the quickstart (600 steps): one shared temperature from 1/0.07 gives
    # IR@1 12.3 / TR@1 24.0 and interleaved cIoU 45.6, a class-only 1/0.07 with e^1 elsewhere
    # 6.3 / 14.0 and 34.3 (PQ 31.5 against 32.5), so the quickstart shares one.
    class_logit_scale_init: float | None = None
    whiten: bool = False  # ZCA-whiten the frozen text features (set when training calibrates)
    cache_entries: int = 0  # > 0: cache features of that many texts (frozen encoders only)
    cache_dir: str | None = None  # also keep cached text features on disk (safetensors)


@dataclass
class PixelDecoderConfig:
    conv_dim: int = 512  # width of the three levels (= interface hidden size)
    mask_dim: int = 512  # channels of mask_features (pixel space)
    num_encoder_layers: int = 6  # transformer layers on the coarsest level
    num_heads: int = 8
    ffn_dim: int = 2048
    trainable: bool = True  # False when it comes with pretrained weights
    # stride of mask_features; None: the finest level's (the released design); finer adds a
    # pixel-detail path (small images)
    mask_stride: int | None = None
    detail_dim: int = 32  # channels of that path
    # a bottom-up path after the top-down one (PANet): the stride-4 map, strided, is added to
    # the stride-8 level, that to the stride-16 one, and so on, so the levels the interface
    # attends also carry what only the finest encoder level sees (not in the released models)
    bottom_up: bool = False
    # the interface attends the three finest outputs (strides 16, 8, 4) instead of the three
    # coarsest (32, 16, 8; the released design): small objects cover more cells
    attend_finest: bool = False


@dataclass
class InterfaceConfig:
    hidden_dim: int = 512
    num_layers: int = 9
    num_heads: int = 8
    ffn_dim: int = 2048
    num_proposals: int = 100  # per proposal group; the image query is one more
    num_levels: int = 3  # image levels attended, strides 32/16/8
    spatial_memories: int = 32
    dim_proj: int = 512  # semantic space size
    max_spatial_points: int = 512  # points drawn per image for spatial tokens
    variant: Variant = "official"  # prototype variant: "official" or "paper"
    pixel_scores: PixelScores = "dot"  # "dot" (released weights) or "cosine"


@dataclass
class ConventionsConfig:
    """Numerical conventions that released FIND weights were trained with (``official``
    presets) and findvl's own choices (the defaults, kept by ``find_tiny``/``find_synth``)."""

    point_convention: PointConvention = "center"  # see findvl.model.sampler
    points_per_level: bool = False  # True: each level draws its own points (official)
    class_prompt: ClassPrompt = "name"  # "describe": "Describe the concept of {name}."
    grounding_scale_cap: float | None = None  # official: exp(logit_scale) capped at 100
    # where class embeddings come from: "interface" (FIND: a class query attends the class
    # name's tokens in a text-only pass) or "text" (X-Decoder's: the name's projected
    # end-of-text token). With weak frozen vision features the interface maps the 8 shape
    # names to one embedding from the start (cos 0.997 at initialisation, 0.99 after
    # training) and a softmax over equal class embeddings never separates them again
    class_table: ClassTable = "interface"
    # > 0: at inference, a visual prompt's proposal scores add this times the proposal mask's
    # agreement with the prompt (findvl.model.agreement); 0: the learned score alone (FIND)
    click_agreement: float = 0.0
    # the image embedding of both retrieval tasks: "pooled" (FIND's: attention pooling of the
    # object proposals, re-computed in the heads) or "attended" (the image query's own output:
    # it attends every image level by content attention, as the prototypes say)
    image_query: ImageQuery = "pooled"
    # what a phrase's grounding score reads: "interface" (FIND: the description query's output,
    # a learned query attending the phrase's tokens in a text-only way) or "text" (the phrase's
    # projected end-of-text token, as X-Decoder grounds; the same collapse as class_table)
    grounding_query: GroundingQuery = "interface"
    # True: a text token's position in the interface (what its attention keys and queries add
    # to its feature) also carries a sine code of its index in its text, so word order reaches
    # the interface; False (FIND): the token's feature alone, order only as the frozen text
    # tower encodes it
    text_positions: bool = False


@dataclass
class ModelConfig:
    preset: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)
    conventions: ConventionsConfig = field(default_factory=ConventionsConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> ModelConfig:
        """Every value of an enumerated field is one of its choices, and the parts fit together;
        ``ValueError`` naming the key otherwise (one line). Returns ``self``."""
        check_choices(self)
        pd, it = self.pixel_decoder, self.interface
        if pd.conv_dim != it.hidden_dim:
            raise ValueError(
                f"pixel_decoder.conv_dim={pd.conv_dim} must equal "
                f"interface.hidden_dim={it.hidden_dim}"
            )
        for key, reads in (
            ("class_table", "reads class embeddings from"),
            ("grounding_query", "scores phrases by"),
        ):
            if getattr(self.conventions, key) == "text" and it.dim_proj != it.hidden_dim:
                raise ValueError(
                    f"conventions.{key}='text' {reads} the projected text tokens "
                    f"(interface.hidden_dim={it.hidden_dim} wide): interface.dim_proj="
                    f"{it.dim_proj} must equal it"
                )
        if self.vision.kind == "official" and not self.vision.backbone:
            raise ValueError("vision.backbone: required when vision.kind is 'official'")
        cap = self.conventions.grounding_scale_cap
        if cap is not None and not cap > 0:
            raise ValueError(f"conventions.grounding_scale_cap={cap!r}: expected a positive number")
        agreement = self.conventions.click_agreement
        if isinstance(agreement, bool) or not isinstance(agreement, (int, float)) or agreement < 0:
            raise ValueError(f"conventions.click_agreement={agreement!r}: expected a number >= 0")
        return self

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


#: The conventions of the released FIND weights (see :mod:`findvl.model.conventions`).
OFFICIAL_CONVENTIONS = ConventionsConfig(
    point_convention="official",
    points_per_level=True,
    class_prompt="describe",
    grounding_scale_cap=100.0,
)


def choices(hint: Any) -> tuple | None:
    """The allowed values of a ``Literal`` (or ``Literal | None``) field type, else None."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is Literal:
                return typing.get_args(arg)
    return None


def check_choices(config: Any, path: str = "") -> None:
    """``ValueError`` naming the first field of dataclass ``config`` (nested ones included)
    whose value is not one of its ``Literal`` choices."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), f"{path}{f.name}"
        if dataclasses.is_dataclass(value):
            check_choices(value, f"{name}.")
            continue
        allowed = choices(hints[f.name])
        optional = type(None) in typing.get_args(hints[f.name])
        if allowed is not None and value not in allowed and not (value is None and optional):
            raise ValueError(f"{name}={value!r}: expected one of {list(allowed)}")


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; an unknown key raises ``ValueError`` naming it."""
    if not isinstance(data, dict):
        raise ValueError(
            f"config {path or cls.__name__}: expected an object, got {type(data).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{path}.{key}" if path else key
        if key not in fields:
            raise ValueError(f"unknown config key {name!r} (known: {sorted(fields)})")
        sub = (
            fields[key].default_factory
            if fields[key].default_factory is not dataclasses.MISSING
            else None
        )
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[key] = from_dict(sub, value, name)
        else:
            kwargs[key] = _typed(value, hints[key], name)
    return cls(**kwargs)


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _typed(value: Any, hint: Any, name: str) -> Any:
    """``value`` checked against the field type ``hint`` (ints become floats where floats are
    expected, lists tuples); ``ValueError`` naming the key otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            raise ValueError(f"config key {name!r}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _typed(value, option, name)
            except ValueError as error:
                errors.append(error)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {name!r}: expected a list, got {value!r}")
        item = args[0] if args else Any
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(
                    f"config key {name!r}: expected {len(args)} values, got {list(value)!r}"
                )
            return tuple(_typed(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return tuple(_typed(v, item, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {name!r}: expected an object, got {value!r}")
        for k, v in value.items():  # checked, kept as given (integer weights stay integers)
            _typed(v, args[1] if args else Any, f"{name}.{k}")
        return dict(value)
    if hint in _SCALARS:
        ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if hint is float and ok and not math.isfinite(value):
            ok = False
        if not ok:
            raise ValueError(f"config key {name!r}: expected {_SCALARS[hint]}, got {value!r}")
        return value
    return value


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Apply ``key.sub=value`` strings (values parsed as JSON, else kept as strings)."""
    data = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(
                    f"unknown config key {'.'.join(parts[: i + 1])!r} in --set {item!r}"
                )
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return from_dict(type(config), data)
