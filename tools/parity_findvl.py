"""The findvl side of the parity checks: the same tasks as ``official_runner``, through the
public forward (typed requests), returning tensors laid out as the official ones.

Used by ``tools/parity_official.py`` and ``tests/convert/test_parity_golden.py``.
"""

from __future__ import annotations

import torch

from findvl.encoders.preprocess import ImageNorm
from findvl.encoders.vision import FeatureLevel, VisionEncoder
from findvl.model.requests import (
    Entity,
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
    VisualReference,
)

#: The interleaved query of the parity runs: a text entity and a visual one (a prompt region).
INTERLEAVE_TEXT = "the red circle is left of the blue square"
INTERLEAVE_SPANS = ((4, 14), (30, 41))


def interleaved(prompt: torch.Tensor) -> InterleavedText:
    """:data:`INTERLEAVE_TEXT` with its second entity given as the region ``prompt``."""
    (s0, e0), (s1, e1) = INTERLEAVE_SPANS
    reference = VisualReference(image=None, prompt=VisualPrompt(prompt))
    return InterleavedText(INTERLEAVE_TEXT, [Entity(s0, e0), Entity(s1, e1, reference)])


class FixedFeatures(VisionEncoder):
    """A vision encoder that returns given backbone features whatever the pixels (parity of
    everything after the backbone). ``features``: ``{res2..res5: [1,C,H/s,W/s]}``."""

    model_type = "fixed"

    def __init__(self, features: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.features = features
        self.levels = tuple(
            FeatureLevel(name, 2 ** (i + 2), f.shape[1])
            for i, (name, f) in enumerate(features.items())
        )
        self.norm = ImageNorm()

    def forward_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.expand(pixels.shape[0], -1, -1, -1) for k, v in self.features.items()}


def image_of(height: int, width: int) -> torch.Tensor:
    """A fixed test image ``[3,H,W]`` (0..255)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, height, width), generator=g).float()


def prompts_for(height: int, width: int) -> torch.Tensor:
    """Two small prompt regions ``[2,H,W]``: a disk at the top-left corner (the sampling
    convention matters most at the border) and a box near the bottom-right corner. Both are
    smaller than the point budget, so every pixel becomes a token on both sides."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    disk = (yy - 1) ** 2 + (xx - 2) ** 2 <= 9
    box = (yy >= height - 6) & (yy < height - 1) & (xx >= width - 9) & (xx < width - 3)
    return torch.stack([disk, box])


@torch.no_grad()
def run_tasks(model, image: torch.Tensor, task_inputs: dict) -> dict[str, torch.Tensor]:
    """Run every task in ``task_inputs`` (keys ``classes``, ``phrases``, ``prompts``
    ``[M,H,W]`` bool, ``caption``, ``interleave``: the ``[H,W]`` region of the visual entity of
    :data:`INTERLEAVE_TEXT`) with batch size 1; outputs keyed ``task.output`` and laid
    out as ``official_runner``'s."""
    model.eval()
    out: dict[str, torch.Tensor] = {}
    feats = model.encode_images([image])
    if "classes" in task_inputs:
        r = model(feats, [GenericSegmentation(list(task_inputs["classes"]))])
        final = r.generic_segmentation.layers[-1]
        out["generic.logits"] = final.logits
        out["generic.masks"] = final.masks
        out["generic.class_embeddings"] = r.generic_segmentation.class_embeddings
    if "phrases" in task_inputs:
        r = model(feats, [GroundedSegmentation([list(task_inputs["phrases"])])])
        final = r.grounded_segmentation.layers[-1]
        out["grounding.scores"] = final.logits[0].t()  # TxN -> NxT, as the official
        out["grounding.masks"] = final.masks[0]
    if "prompts" in task_inputs:
        prompts = [VisualPrompt(p) for p in task_inputs["prompts"]]
        gen = torch.Generator().manual_seed(0)
        r = model(feats, [InteractiveSegmentation([prompts])], generator=gen)
        final = r.interactive_segmentation.layers[-1]
        out["interactive.scores"] = final.logits[0]
        out["interactive.masks"] = final.masks[0]
    if "interleave" in task_inputs:
        item = interleaved(task_inputs["interleave"])
        gen = torch.Generator().manual_seed(0)
        r = model(feats, [InterleaveSegmentation([item])], generator=gen)
        final = r.interleave_segmentation.layers[-1]
        out["interleave.scores"] = final.logits[0].t()  # ExN -> NxE, as the official
        out["interleave.masks"] = final.masks[0]
        r = model(feats, [InterleaveRetrieval([item])], generator=gen)
        final = r.interleave_retrieval.layers[-1]
        out["interleave.legend"] = final.query[0]
        out["interleave.image"] = final.image[0]
    if "caption" in task_inputs:
        r = model(feats, [ImageTextRetrieval([task_inputs["caption"]])])
        final = r.image_text_retrieval.layers[-1]
        out["retrieval.image"] = final.image[0]
        out["retrieval.caption"] = final.query[0]
    return out


def differences(
    official: dict[str, torch.Tensor], mine: dict[str, torch.Tensor]
) -> dict[str, tuple[float, float]]:
    """Per output: ``(max |a - b|, max |a - b| / max |b|)`` with ``b`` the official tensor."""
    table = {}
    for key, ref in official.items():
        got = mine[key].to(ref.dtype)
        if got.shape != ref.shape:
            raise ValueError(f"{key}: findvl shape {tuple(got.shape)} vs {tuple(ref.shape)}")
        diff = (got - ref).abs().max().item()
        table[key] = (diff, diff / max(ref.abs().max().item(), 1e-12))
    return table


def small_config(meta: dict, tokenizer: str):
    """The findvl config of a shrunk official config (``meta`` of a golden fixture)."""
    import dataclasses

    from findvl.config import (
        InterfaceConfig,
        LanguageConfig,
        ModelConfig,
        PixelDecoderConfig,
        VisionConfig,
    )
    from findvl.model.conventions import OFFICIAL

    s = meta["shrink"]
    return ModelConfig(
        preset="parity-small",
        vision=VisionConfig(kind="tiny", widths=tuple(meta["channels"].values())),
        language=LanguageConfig(
            kind="unicl",
            path=tokenizer,
            dim=s["text_width"],
            num_layers=s["text_layers"],
            num_heads=s["text_heads"],
            vocab_size=meta["vocab_size"],
            max_length=77,
            trainable=False,
        ),
        pixel_decoder=PixelDecoderConfig(
            conv_dim=s["dim"],
            mask_dim=s["dim"],
            num_encoder_layers=s["enc_layers"],
            num_heads=s["heads"],
            ffn_dim=s["ffn"],
            trainable=False,
        ),
        interface=InterfaceConfig(
            hidden_dim=s["dim"],
            num_layers=s["dec_layers"],
            num_heads=s["heads"],
            ffn_dim=s["ffn"],
            num_proposals=s["queries"],
            spatial_memories=s["memories"],
            dim_proj=s["dim"],
        ),
        conventions=dataclasses.replace(OFFICIAL),
    )


def converted_small_model(meta: dict, weights: dict, features: dict, tokenizer: str):
    """Build the shrunk findvl model, put ``features`` in place of its backbone, and load the
    official ``weights`` through the strict converter."""
    from findvl.build import build_model
    from findvl.convert.official import convert_state_dict, load_converted

    model = build_model(small_config(meta, tokenizer))
    model.vision = FixedFeatures(features)
    load_converted(model, convert_state_dict(weights, model, external_language=False))
    return model.eval()
