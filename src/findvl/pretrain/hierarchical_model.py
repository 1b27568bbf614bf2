"""A CLIP-style pair with a hierarchical convolutional image tower and per-level dense heads.

The image tower is a ``transformers.RegNetModel`` (or ``ConvNextModel``): its levels (the
maps :class:`~findvl.encoders.hf_hierarchical.HierarchicalAdapter` gives FIND, strides
2/4/8/16 on 64 px images) are the multi-scale features FIND reads, the way FIND reads the
stages of its FocalNet (X-Decoder's backbone, a hierarchical convolutional network trained on
COCO segmentation and captions). A ViT trained from scratch on a few thousand 64 px images
learns colours and backgrounds but not shapes (per-patch accuracy on shapes 22%, chance
12.5%); convolutions see a shape's outline from the first layers.

The dense heads (deep supervision: one linear head per level from stride 4 on, each
predicting the class fractions of its own cells) make every level FIND attends class-aware;
they are discarded. Optional colour heads do the same for the colours of the things in each
cell: without them the deep levels lose colour (nothing else asks for it), and FIND's queries,
which read the deep levels, cannot tell "the red circle" from "the blue circle".
"""

from __future__ import annotations

import torch
from torch import nn

from findvl.encoders.hf_hierarchical import probe_levels
from findvl.pretrain.model import DenseDualEncoder

LABEL_STRIDE = 4  # the finest dense-label grid: one cell per 4x4 pixels


class DenseHierarchicalClip(DenseDualEncoder):
    """Hierarchical image tower + ``CLIPTextModel`` text tower + per-level dense heads.

    Args:
        vision: a ``transformers.RegNetModel`` or ``ConvNextModel``.
        text: a ``transformers.CLIPTextModel``.
        projection_dim: width of the shared embedding.
        num_classes: classes of the dense heads (void included).
        num_colours: colours of the colour heads (0: none), besides "no thing".
        init_logit_scale: ``log`` of the initial inverse temperature.
        max_logit_scale: the largest ``exp(logit_scale)``.
    """

    supports_patch_drop = False

    def __init__(
        self,
        *,
        vision: nn.Module,
        text: nn.Module,
        projection_dim: int,
        num_classes: int,
        init_logit_scale: float,
        max_logit_scale: float,
        num_colours: int = 0,
    ) -> None:
        super().__init__()
        self.vision_model = vision
        self.text_model = text
        indices, levels = probe_levels(vision)
        self.visual_projection = nn.Linear(levels[-1].channels, projection_dim, bias=False)
        self.text_projection = nn.Linear(text.config.hidden_size, projection_dim, bias=False)
        self.logit_scale_param = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.max_logit_scale = max_logit_scale
        dense = [(i, level) for i, level in zip(indices, levels) if level.stride >= LABEL_STRIDE]
        if not dense or dense[0][1].stride != LABEL_STRIDE:
            raise ValueError(f"the levels {levels} have no stride-{LABEL_STRIDE} map")
        self.dense_stages = [i for i, _ in dense]
        self.dense_heads = nn.ModuleList(
            nn.Linear(level.channels, num_classes) for _, level in dense
        )
        self.colour_heads = nn.ModuleList(
            nn.Linear(level.channels, num_colours + 1) for _, level in dense if num_colours
        )

    def encode_dense(
        self, pixels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``[B,3,S,S]`` -> (``[B,P]`` normalised embeddings, per-level dense logits).

        The logits are ``[B,N_l,K]`` for the levels at strides 4, 8, 16 (row-major cells,
        ``N_l = (S/stride)**2``), finest first; the embedding projects the pooled last map.
        ``keep`` must be None (a convolutional tower runs every pixel).
        """
        embeds, logits, _ = self.encode_all(pixels, keep)
        return embeds, logits

    def encode_all(
        self, pixels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """:meth:`encode_dense` and the colour heads' ``[B,N_l,C+1]`` logits (empty without)."""
        if keep is not None:
            raise ValueError("a convolutional tower runs every pixel (no patch dropping)")
        out = self.vision_model(pixel_values=pixels, output_hidden_states=True)
        stages = out.hidden_states
        pooled = out.pooler_output.flatten(1)  # RegNet pools to [B,C,1,1], ConvNeXt to [B,C]
        embeds = nn.functional.normalize(self.visual_projection(pooled), dim=-1)
        cells = [stages[i].flatten(2).transpose(1, 2) for i in self.dense_stages]  # Bx(hw)xC
        logits = tuple(head(x) for x, head in zip(cells, self.dense_heads))
        colours = tuple(head(x) for x, head in zip(cells, self.colour_heads))
        return embeds, logits, colours

    def logit_scale(self) -> torch.Tensor:
        return self.logit_scale_param.exp().clamp(max=self.max_logit_scale)


def build_dense_hierarchical_clip(
    vision_config, text_config, *, projection_dim: int, num_classes: int,
    init_logit_scale: float, max_logit_scale: float, num_colours: int = 0,
) -> DenseHierarchicalClip:  # fmt: skip
    """A fresh :class:`DenseHierarchicalClip` from the two ``transformers`` configs."""
    from transformers import AutoModel, CLIPTextModel

    return DenseHierarchicalClip(
        vision=AutoModel.from_config(vision_config),
        text=CLIPTextModel(text_config),
        projection_dim=projection_dim,
        num_classes=num_classes,
        init_logit_scale=init_logit_scale,
        max_logit_scale=max_logit_scale,
        num_colours=num_colours,
    )
