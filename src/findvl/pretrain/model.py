"""The model pretrained here: a from-scratch ``CLIPModel`` plus a linear per-patch head.

Only the two towers are exported; the dense head is a training device and is discarded. The
model holds no loss code (see :mod:`findvl.pretrain.losses`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PretrainOutput:
    """What one forward of :class:`DenseClipModel` gives.

    Attributes:
        image_embeds: ``[B,P]`` L2-normalised image embeddings (projected pooled CLS).
        text_embeds: ``[T,P]`` L2-normalised caption embeddings (projected EOT feature).
        patch_logits: per-level class logits, finest first: ``[B,N_l,K]``, ``N_l`` cells
            row-major (one level for a ViT: its patches, the kept ones in ``keep`` order when
            patches are dropped; a level per stage from stride 4 on for a ConvNeXt).
        logit_scale: scalar, ``exp`` of the learnable log inverse temperature (clamped).
        colour_logits: per-level logits of the colour heads, ``[B,N_l,C+1]`` (class 0: no
            thing), the levels of ``patch_logits``; empty for a model without them.
    """

    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    patch_logits: tuple[torch.Tensor, ...]
    logit_scale: torch.Tensor
    colour_logits: tuple[torch.Tensor, ...] = ()


class DenseDualEncoder(nn.Module):
    """What both pretrained pairs share: the text side and the joint forward.

    Subclasses provide ``text_model``, ``text_projection``, :meth:`encode_dense` and
    :meth:`logit_scale`.
    """

    def encode_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[T,L]`` ids and bool mask -> ``[T,P]`` normalised embeddings (EOT pooled)."""
        out = self.text_model(input_ids=ids, attention_mask=mask.long())
        return nn.functional.normalize(self.text_projection(out.pooler_output), dim=-1)

    def encode_all(
        self, pixels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """:meth:`encode_dense` and the colour heads' logits (none here)."""
        embeds, logits = self.encode_dense(pixels, keep)
        return embeds, logits, ()

    def forward(
        self,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> PretrainOutput:
        """Images ``[B,3,S,S]``, captions ``[T,L]`` (ids, bool mask), kept patches ``[B,K]``."""
        image_embeds, logits, colours = self.encode_all(pixels, keep)
        return PretrainOutput(
            image_embeds=image_embeds,
            text_embeds=self.encode_texts(ids, mask),
            patch_logits=logits,
            logit_scale=self.logit_scale(),
            colour_logits=colours,
        )


class DenseClipModel(DenseDualEncoder):
    """``CLIPModel`` with a linear head on the vision tower's final patch tokens.

    The head reads ``last_hidden_state`` without the CLS token, the very features
    :class:`~findvl.encoders.hf_vision.ClipVisionAdapter` gives FIND.

    Args:
        clip: a ``transformers.CLIPModel``.
        num_classes: classes of the per-patch head (void included).
        max_logit_scale: the largest ``exp(logit_scale)``.
    """

    supports_patch_drop = True

    def __init__(self, *, clip: nn.Module, num_classes: int, max_logit_scale: float) -> None:
        super().__init__()
        self.clip = clip
        self.dense_head = nn.Linear(clip.config.vision_config.hidden_size, num_classes)
        self.max_logit_scale = max_logit_scale

    @property
    def text_model(self) -> nn.Module:
        return self.clip.text_model

    @property
    def text_projection(self) -> nn.Module:
        return self.clip.text_projection

    def encode_images(
        self, pixels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,3,S,S]`` -> (``[B,P]`` normalised embeddings, ``[B,N',C]`` final patch tokens).

        Args:
            pixels: normalised images.
            keep: ``[B,K]`` indices of the patches to run (FLIP's random masking: the others
                are dropped before the encoder, ``N' = K``); None runs all ``N`` patches, which
                is exactly ``CLIPVisionModel.forward``.
        """
        vision = self.clip.vision_model
        tokens = vision.embeddings(pixels)  # Bx(1+N)xC, position embeddings added
        if keep is not None:
            index = keep[..., None].expand(-1, -1, tokens.shape[-1])  # BxKxC
            tokens = torch.cat([tokens[:, :1], tokens[:, 1:].gather(1, index)], dim=1)
        hidden = vision.encoder(inputs_embeds=vision.pre_layrnorm(tokens)).last_hidden_state
        pooled = vision.post_layernorm(hidden[:, 0])
        embeds = nn.functional.normalize(self.clip.visual_projection(pooled), dim=-1)
        return embeds, hidden[:, 1:]

    def encode_dense(
        self, pixels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        """``[B,3,S,S]`` -> (``[B,P]`` embeddings, (``[B,N',K]`` patch logits,)): one level."""
        embeds, patches = self.encode_images(pixels, keep)
        return embeds, (self.dense_head(patches),)

    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().clamp(max=self.max_logit_scale)


# sine-cosine codes have std ~0.7; x0.2 matches the patch embeddings' ~0.14 at initialisation
POSITION_SCALE = 0.2


def sincos_position_table(grid: int, dim: int) -> torch.Tensor:
    """``[1 + grid*grid, dim]`` 2-D sine-cosine position codes (MAE's), zeros for the CLS slot.

    Half the channels encode the row, half the column, each as sines and cosines of
    geometrically spaced frequencies.
    """
    if dim % 4:
        raise ValueError(f"the width {dim} must be a multiple of 4 for 2-D sine-cosine codes")
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(position: torch.Tensor) -> torch.Tensor:
        angles = position.reshape(-1, 1) * frequencies  # (g*g)x(dim/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(rows), encode(cols)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()


def build_dense_clip(config, *, num_classes: int, max_logit_scale: float) -> DenseClipModel:
    """A freshly initialised :class:`DenseClipModel` from a ``transformers.CLIPConfig``.

    The vision position embeddings start as 2-D sine-cosine codes (then learnt): a locality
    prior that a ViT trained from scratch on a few thousand images otherwise learns slowly.
    """
    from transformers import CLIPModel

    clip = CLIPModel(config)
    vision = config.vision_config
    grid = vision.image_size // vision.patch_size
    with torch.no_grad():
        table = sincos_position_table(grid, vision.hidden_size)  # entries in [-1, 1]
        clip.vision_model.embeddings.position_embedding.weight.copy_(POSITION_SCALE * table)
    return DenseClipModel(clip=clip, num_classes=num_classes, max_logit_scale=max_logit_scale)
