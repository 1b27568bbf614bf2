"""Settings of encoder pretraining: the two towers, the objectives and the optimiser.

The tower sizes become a ``transformers.CLIPConfig`` (:func:`clip_config`); everything is saved
next to the exported weights (``pretrain.json``) so a run can be read back and repeated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

VISION_KINDS = ("resnet", "regnet", "convnext", "vit")


@dataclass
class VisionTowerConfig:
    """The image tower trained from scratch.

    ``kind="vit"`` (the default, the shipped ``synth-clip-vision``): a ``CLIPVisionModel``
    (one stride-``patch_size`` grid, FIND adds a pyramid), trained with FLIP's patch dropping.
    ``kind="regnet"``: a ``RegNetModel`` whose stem (stride 2) and three stages (4, 8, 16) are
    the levels FIND reads, as FIND reads its FocalNet's stages; its pooled last stage is the
    image embedding. ``kind="convnext"``: the same with a ``ConvNextModel`` (stages at
    ``patch_size * 2**i``; use ``patch_size=2``). ``kind="resnet"`` (the shipped ``resnet/``,
    the quickstart's): a ``ResNetModel`` of basic blocks (dense 3x3 convolutions) whose four
    stages (strides 4..32) are the levels; trained at ``image_size=128`` (the 64 px images
    resized, as FIND resizes its inputs), they are strides 2..16 of the original pixels.
    """

    kind: str = "vit"
    image_size: int = 64  # training resolution; the synthetic images are 64 px
    patch_size: int = 4  # vit: the patch (16x16 grid at 64 px); convnext: the stem's stride
    grid_stride: int = 4  # vit: input pixels per patch at inference (the adapter's grid_stride)
    hidden_size: int = 64  # vit: the token width (96 learnt less per CPU s)
    num_layers: int = 4  # vit
    num_heads: int = 4  # vit
    mlp_ratio: int = 4  # intermediate_size = mlp_ratio * hidden_size
    hidden_sizes: tuple[int, ...] = (48, 96, 144)  # regnet/convnext/resnet: stage widths
    depths: tuple[int, ...] = (1, 2, 2)  # regnet/convnext/resnet: blocks per stage
    embedding_size: int = 32  # regnet/resnet: the stem's width
    groups_width: int = 48  # regnet: channels per group of the 3x3 convs
    layer_type: str = "x"  # regnet: "x" (no squeeze-excitation) or "y"

    def __post_init__(self) -> None:
        if self.kind not in VISION_KINDS:
            raise ValueError(f"vision.kind={self.kind!r}: expected one of {VISION_KINDS}")
        self.hidden_sizes, self.depths = tuple(self.hidden_sizes), tuple(self.depths)

    @property
    def label_stride(self) -> int:
        """Pixels per cell of the finest dense-label grid (the ViT patch; convnext stride 4)."""
        return self.patch_size if self.kind == "vit" else 4

    def longest_side(self) -> int:
        """The adapter's ``longest_side`` that feeds the tower its training pixels."""
        if self.kind != "vit":
            return self.image_size
        from findvl.pretrain.data import adapter_longest_side

        return adapter_longest_side(self.image_size, self.patch_size, self.grid_stride)


@dataclass
class TextTowerConfig:
    """The causal text transformer trained from scratch (a ``CLIPTextModel``)."""

    hidden_size: int = 64
    num_layers: int = 3
    num_heads: int = 4
    mlp_ratio: int = 4
    max_length: int = 77  # position table size, as OpenAI's CLIP
    vocab_size: int = 1024  # upper bound of the learned BPE vocabulary (specials excluded)


@dataclass
class ObjectiveConfig:
    """The losses: CLIP's InfoNCE plus a dense per-patch classification term."""

    projection_dim: int = 128  # shared image/text embedding of the contrastive loss
    init_temperature: float = 0.07  # CLIP's initial softmax temperature (learnable)
    max_logit_scale: float = 100.0  # CLIP clamps exp(logit_scale) at 100
    dense_weight: float = 1.0  # weight of the per-patch panoptic-category loss
    mask_ratio: float = 0.5  # FLIP: share of patches dropped per image (2x cheaper steps)
    unmasked_tail: float = 0.2  # the last share of the run sees every patch, as at inference
    class_balance: float = 0.5  # class weights frequency**-x: shapes are ~2% of pixels each
    # NegCLIP hard negatives: each caption with one shape word and one colour word swapped,
    # extra image->text negatives (colours and backgrounds already tell a batch's captions
    # apart, so the text tower ignores shape words). Off by default: with the shipped tiny
    # ViT they changed nothing measurable (val: true caption above its shape swap 50.0%
    # against 49.7%), since the image side itself does not encode shape
    hard_negatives: bool = False
    # Binding swaps (colours, sizes or shapes exchanged between two objects, a relation
    # turned round; findvl.pretrain.negatives.BINDING_KINDS), further image->text negatives:
    # the same words as the caption, so only towers that bind attributes to objects rank
    # them below it. Off by default (FIND's encoders are plain CLIP-style towers)
    binding_negatives: bool = False

    def negative_kinds(self) -> tuple[str, ...]:
        """The kinds of hard negatives this objective trains with (may be empty)."""
        from findvl.pretrain.negatives import BINDING_KINDS, REPLACEMENT_KINDS

        return REPLACEMENT_KINDS * self.hard_negatives + BINDING_KINDS * self.binding_negatives

    thing_weight: float = 1.0  # extra factor on the dense weight of thing classes
    # Colour heads beside the dense heads (hierarchical towers): each level predicts the
    # palette colours of the things in its cells (soft cross-entropy, frequency-balanced).
    # Without them the deep levels lose colour (linear probe of an object's colour from the
    # shipped ResNet's res4 / res5: 16 / 12% against 99% from res2). 0 = off
    colour_weight: float = 0.0


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay, over steps or over a time budget."""

    batch_size: int = 32  # images (one random caption each) per step; 32 beat 64 per CPU s
    lr: float = 2e-3
    weight_decay: float = 0.05  # not applied to norms, biases, embeddings, logit scale
    warmup: float = 0.05  # fraction of the run spent warming up
    grad_clip: float = 1.0
    steps: int | None = 1800  # stop after this many steps (None: only the time budget)
    minutes: float | None = None  # stop after this much wall-clock time
    eval_every: int = 100  # steps between held-out evaluations (a JSON log line each)
    holdout: int = 128  # training images kept out of training for the logged retrieval
    seed: int = 0


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on (besides the data)."""

    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        return cls(
            vision=VisionTowerConfig(**data.get("vision", {})),
            text=TextTowerConfig(**data.get("text", {})),
            objective=ObjectiveConfig(**data.get("objective", {})),
            optim=OptimConfig(**data.get("optim", {})),
        )


def hierarchical_config(cfg: PretrainConfig):
    """The ``transformers`` config of a ``kind="regnet"``, ``"resnet"`` or ``"convnext"`` image
    tower."""
    from transformers import ConvNextConfig, RegNetConfig, ResNetConfig

    v = cfg.vision
    if len(v.hidden_sizes) != len(v.depths):
        raise ValueError(f"vision: {len(v.hidden_sizes)} widths but {len(v.depths)} depths")
    if v.kind == "regnet":
        if any(width % v.groups_width for width in v.hidden_sizes):
            raise ValueError(f"vision: widths {v.hidden_sizes} not multiples of groups_width")
        return RegNetConfig(
            num_channels=3,
            embedding_size=v.embedding_size,
            hidden_sizes=list(v.hidden_sizes),
            depths=list(v.depths),
            groups_width=v.groups_width,
            layer_type=v.layer_type,
            downsample_in_first_stage=True,  # stem 2, stages 4/8/16: every level FIND needs
        )
    if v.kind == "resnet":
        return ResNetConfig(
            num_channels=3,
            embedding_size=v.embedding_size,
            hidden_sizes=list(v.hidden_sizes),
            depths=list(v.depths),
            layer_type="basic",
            downsample_in_first_stage=False,  # stem 4 (conv 2, max-pool 2), stages 4/8/16/32
        )
    return ConvNextConfig(
        num_channels=3,
        patch_size=v.patch_size,
        num_stages=len(v.depths),
        hidden_sizes=list(v.hidden_sizes),
        depths=list(v.depths),
        image_size=v.image_size,
        # ConvNeXt's 1e-6 layer scale starts every block at the identity: trained from
        # scratch for minutes it left the tower nearly linear (shape accuracy 13% at 400 steps)
        layer_scale_init_value=0.0,
    )


def clip_config(cfg: PretrainConfig, *, vocab_size: int, bos_id: int, eos_id: int):
    """The ``transformers.CLIPConfig`` of the two towers.

    ``eos_token_id`` is the tokenizer's (not CLIP's legacy 2), so ``CLIPTextModel`` pools the
    first EOS position, the same token ``ClipTextEncoder`` reads.
    """
    from transformers import CLIPConfig

    v, t = cfg.vision, cfg.text
    if v.image_size % v.patch_size:
        raise ValueError(f"image_size {v.image_size} is not a multiple of patch {v.patch_size}")
    vision = dict(
        image_size=v.image_size,
        patch_size=v.patch_size,
        hidden_size=v.hidden_size,
        intermediate_size=v.mlp_ratio * v.hidden_size,
        num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads,
        projection_dim=cfg.objective.projection_dim,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.mlp_ratio * t.hidden_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        max_position_embeddings=t.max_length,
        projection_dim=cfg.objective.projection_dim,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPConfig(
        vision_config=vision,
        text_config=text,
        projection_dim=cfg.objective.projection_dim,
        logit_scale_init_value=math.log(1 / cfg.objective.init_temperature),
    )
