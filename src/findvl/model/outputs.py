"""Typed outputs of one forward. ``B`` images, ``N`` proposals, ``T`` targets, ``K`` classes,
``P`` semantic size.

Every task output keeps one entry per interface layer in ``layers`` (the first is the
prediction from the initial queries, the last is final) for deep supervision; ``final`` is the
last one. Masks are logits at the mask stride of the padded canvas; :meth:`FindOutput.to_original`
brings them to an image's own pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masks_to_original(
    masks: torch.Tensor,
    *,
    input_size: tuple[int, int],
    canvas: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """``[N,h,w]`` logits on the padded canvas (any stride) -> ``[N,H0,W0]`` float logits on
    the original image: upsample to the canvas, crop the valid region, resize to the original
    size (bilinear). The one canvas-to-image conversion of the project."""
    if masks.shape[0] == 0:
        return masks.new_zeros(0, *original_size, dtype=torch.float32)
    x = F.interpolate(masks[None].float(), size=canvas, mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(input_size) != tuple(original_size):
        x = F.interpolate(x, size=original_size, mode="bilinear", align_corners=False)
    return x[0]


class ProposalMasks:
    """Mask logits of a proposal group, formed where they are read.

    A forward either forms every proposal's masks (``masks``) or keeps their two factors, the
    mask embeddings ``embed [B,N,M]`` and the pixel decoder's ``features [B,M,H/4,W/4]``, whose
    per-pixel product they are; then only the masks a caller asks for are formed (a click keeps
    one proposal of a hundred). Both give the same logits up to float rounding.
    """

    masks: torch.Tensor | None
    embed: torch.Tensor | None
    features: torch.Tensor | None

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.embed is None or self.features is None:
            raise ValueError("proposal masks: this output holds neither masks nor their factors")
        return self.embed, self.features

    def dense(self) -> torch.Tensor:
        """``[B,N,H/4,W/4]`` the mask logits of every proposal."""
        if self.masks is not None:
            return self.masks
        embed, features = self._factors()
        return torch.einsum("bqc,bchw->bqhw", embed, features)

    def masks_of(self, index: torch.Tensor) -> torch.Tensor:
        """``[B,T,H/4,W/4]`` mask logits of the proposals ``index [B,T]`` (long)."""
        b = torch.arange(index.shape[0], device=index.device)[:, None]
        if self.masks is not None:
            return self.masks[b, index]
        embed, features = self._factors()
        return torch.einsum("btc,bchw->bthw", embed[b, index], features)

    def image_masks(self, b: int, index: torch.Tensor | None = None) -> torch.Tensor:
        """``[k,H/4,W/4]`` mask logits of image ``b``'s proposals ``index [k]`` (None: all)."""
        if self.masks is not None:
            return self.masks[b] if index is None else self.masks[b, index]
        embed, features = self._factors()
        rows = embed[b] if index is None else embed[b, index]
        return torch.einsum("qc,chw->qhw", rows, features[b])


@dataclass
class ProposalScores(ProposalMasks):
    """Masks of a proposal group and the score of each proposal for each target.

    Attributes:
        masks: ``[B,N,H/4,W/4]`` mask logits (None for layers where they were not computed).
        logits: ``[B,T,N]`` score of proposal n for target t (phrase, prompt, entity).
        embed: ``[B,N,M]`` mask embeddings: ``masks = embed · features`` per pixel.
        features: ``[B,M,H/4,W/4]`` the pixel decoder's mask features (None without an image).
    """

    masks: torch.Tensor | None
    logits: torch.Tensor
    embed: torch.Tensor | None = None
    features: torch.Tensor | None = None


@dataclass
class ClassScores(ProposalMasks):
    """Masks of the object proposals and their class logits (generic segmentation).

    Attributes:
        masks: ``[B,N,H/4,W/4]`` mask logits (None for layers where they were not computed).
        logits: ``[B,N,K+1]`` class logits per proposal (last = no object).
        embed: ``[B,N,M]`` mask embeddings: ``masks = embed · features`` per pixel.
        features: ``[B,M,H/4,W/4]`` the pixel decoder's mask features (None without an image).
    """

    masks: torch.Tensor | None
    logits: torch.Tensor
    embed: torch.Tensor | None = None
    features: torch.Tensor | None = None


@dataclass
class GenericSegmentationOutput:
    """``layers[i].logits [B,N,K+1]``; ``class_embeddings [K+1,P]`` (last = background)."""

    layers: list[ClassScores]
    class_names: list[str]
    class_embeddings: torch.Tensor

    @property
    def final(self) -> ClassScores:
        return self.layers[-1]


@dataclass
class TargetedSegmentationOutput:
    """Grounded, interactive or interleaved segmentation: one best proposal per target.

    Attributes:
        layers: ``logits [B,T,N]`` and masks per layer.
        valid: ``[B,T]`` bool, False at padded targets.
        queries: ``[B,T,P]`` final semantic embeddings of the target queries.
        is_visual: ``[B,T]`` bool (interleaved: entity given as a visual reference).
    """

    layers: list[ProposalScores]
    valid: torch.Tensor
    queries: torch.Tensor
    is_visual: torch.Tensor | None = None

    @property
    def final(self) -> ProposalScores:
        return self.layers[-1]

    def best_masks(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """``[B,T,H/4,W/4]`` mask logits of the highest-scoring proposal per target (or of the
        proposals ``index [B,T]`` names)."""
        final = self.final
        index = final.logits.argmax(-1) if index is None else index  # BxT
        return final.masks_of(index)


@dataclass
class EmbeddingPair:
    """Image-side and query-side embeddings of one layer, ``[B,P]`` each, and the layer's
    ``[B,N,P]`` object-proposal embeddings (None where the prototype has no proposals)."""

    image: torch.Tensor
    query: torch.Tensor
    objects: torch.Tensor | None = None
    more: torch.Tensor | None = None  # [B,K,P] further queries per image (ImageTextRetrieval.more)


@dataclass
class RetrievalOutput:
    """Image-text or interleaved retrieval embeddings.

    Attributes:
        layers: per layer image and query (caption or interleave legend) embeddings.
        tokens: ``[B,L,P]`` the projected tokens of each image's caption (image-text
            retrieval; for the token-level training term), or None.
        token_valid: ``[B,L]`` bool, True at tokens (with ``tokens``).
        more_valid: ``[B,K]`` bool, which of ``EmbeddingPair.more`` are captions (None: none).
    """

    layers: list[EmbeddingPair]
    tokens: torch.Tensor | None = None
    token_valid: torch.Tensor | None = None
    more_valid: torch.Tensor | None = None

    @property
    def final(self) -> EmbeddingPair:
        return self.layers[-1]

    @property
    def objects(self) -> torch.Tensor | None:
        """``[B,N,P]`` final semantic embeddings of the object proposals (for the
        entity↔object term of the interleave score); None when not computed."""
        return self.final.objects

    def scored_objects(self) -> torch.Tensor:
        """``[B,N,P]`` what the interleave score compares entities with: the object proposals'
        embeddings, or ``[B,1,P]`` the image embedding itself where the prototypes give the
        task none (the ``paper`` variant), as an index without objects scores its images."""
        objects = self.objects
        return self.final.image[:, None] if objects is None else objects


@dataclass
class FindOutput:
    """Everything one forward returns; a task's field is None when it was not requested.

    Attributes:
        input_sizes: per image ``(h, w)`` of the valid region in the padded canvas.
        original_sizes: per image ``(h, w)`` as given.
        canvas: padded ``(H, W)``.
        logit_scale: the learned temperature (``exp`` is applied by users of the scores).
    """

    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    canvas: tuple[int, int]
    logit_scale: torch.Tensor
    generic_segmentation: GenericSegmentationOutput | None = None
    grounded_segmentation: TargetedSegmentationOutput | None = None
    interactive_segmentation: TargetedSegmentationOutput | None = None
    image_text_retrieval: RetrievalOutput | None = None
    interleave_segmentation: TargetedSegmentationOutput | None = None
    interleave_retrieval: RetrievalOutput | None = None

    def to_original(self, masks: torch.Tensor, b: int) -> torch.Tensor:
        """``[T,h,w]`` canvas logits of image ``b`` -> ``[T,H0,W0]`` float logits on that
        image as given (:func:`masks_to_original`)."""
        return masks_to_original(
            masks,
            input_size=self.input_sizes[b],
            canvas=self.canvas,
            original_size=self.original_sizes[b],
        )
