"""Plain types of one interface forward: the slots that go in and the predictions that come out.

Nothing here computes; the interface (:mod:`findvl.model.interface`), its heads and its masks
all read these types, so none of them imports another for its types alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from findvl.encoders.pixel_decoder import PixelFeatures
from findvl.encoders.preprocess import ImageBatch
from findvl.model.outputs import masks_to_original

#: How a slot takes part in the sequence: object/target proposals carry masks; queries are
#: read out; tokens (text or spatial) are attended; memories hold the previous round.
SlotKind = Literal["proposal", "query", "token", "memory"]


@dataclass
class SlotInput:
    """One slot of the interface sequence.

    Attributes:
        key: slot key in the prototype set, e.g. ``"grounded_segmentation/q.description"``.
        kind: ``proposal``, ``query``, ``token`` or ``memory``.
        x: ``[B,n,D]`` content.
        pos: ``[B,n,D]`` positional embedding (fixed through the layers).
        valid: ``[B,n]`` bool, False at padding.
        ids: ``[B,n]`` int64 or None; for id-matched attention (-1 = belongs to no id).
        levels: for tokens sampled from image levels, the content per level (``[B,n,D]`` each),
            re-installed at every layer (level ``i % 3``).
    """

    key: str
    kind: SlotKind
    x: torch.Tensor
    pos: torch.Tensor
    valid: torch.Tensor
    ids: torch.Tensor | None = None
    levels: list[torch.Tensor] | None = None


@dataclass
class SlotPrediction:
    """Head outputs of one slot at one layer.

    Attributes:
        semantic: ``[B,n,P]`` semantic-space embeddings (``P`` = projection size).
        pixel: ``[B,n,M]`` pixel-space embeddings (``M`` = mask feature size).
        masks: ``[B,n,H/4,W/4]`` mask logits (proposals only; None where not computed).
        attn: ``[B,n,h,w]`` mask logits at the next layer's attention resolution (proposals).
    """

    semantic: torch.Tensor
    pixel: torch.Tensor
    masks: torch.Tensor | None = None
    attn: torch.Tensor | None = None


@dataclass
class MaskFeatures:
    """``full [B,M,H/4,W/4]`` and its bilinear resizes to each attention level."""

    full: torch.Tensor
    levels: list[torch.Tensor]


@dataclass
class InterfaceOutput:
    """Predictions for every output slot, for the initial queries and after each layer.

    Attributes:
        layers: ``num_layers + 1`` dicts ``{slot key: SlotPrediction}``; the last is final.
        mask_features: ``[B,M,H/4,W/4]`` the factor of every proposal's mask logits
            (``masks = pixel · mask_features``), or None without an image.
    """

    layers: list[dict[str, SlotPrediction]]
    mask_features: torch.Tensor | None = None

    @property
    def final(self) -> dict[str, SlotPrediction]:
        return self.layers[-1]


@dataclass
class ProjectedText:
    """Projected token features of a flat list of texts.

    Attributes:
        features: ``[T,L,D]`` (interface width).
        mask: ``[T,L]`` bool, True at tokens.
        offsets: ``[T,L,2]`` character offsets.
        positions: ``[T,L,D]`` what each token's interface position adds to its feature
            (``conventions.text_positions``), or None.
    """

    features: torch.Tensor
    mask: torch.Tensor
    offsets: torch.Tensor
    positions: torch.Tensor | None = None

    def end_of_text(self) -> torch.Tensor:
        """``[T,D]``: each text's last token (CLIP's end-of-text token, its sentence feature)."""
        rows = torch.arange(self.features.shape[0], device=self.mask.device)
        return self.features[rows, self.mask.sum(1) - 1]


@dataclass
class SpatialSource:
    """Where spatial tokens are sampled from: per-level maps and the geometry of their images.

    Attributes:
        maps: per level ``[R,D,h,w]``.
        image_sizes: per row ``(h, w)`` of the prompt masks.
        input_sizes: per row valid ``(h, w)`` after resizing.
        canvas: padded ``(H, W)``.
    """

    maps: list[torch.Tensor]
    image_sizes: list[tuple[int, int]]
    input_sizes: list[tuple[int, int]]
    canvas: tuple[int, int]

    def row(self, index: int) -> SpatialSource:
        """The source of one image (row ``index``), its maps ``[1,D,h,w]`` per level."""
        return SpatialSource(
            [m[index : index + 1] for m in self.maps],
            [self.image_sizes[index]],
            [self.input_sizes[index]],
            self.canvas,
        )


@dataclass(frozen=True)
class PointSampling:
    """How spatial tokens are drawn from a prompt (see :mod:`findvl.model.sampler`).

    Attributes:
        max_points: points per image, shared equally by its regions.
        convention: ``"center"`` or ``"official"``.
        per_level: each feature level draws its own points (released weights).
    """

    max_points: int
    convention: str = "center"
    per_level: bool = False


@dataclass
class InterfaceImageCache:
    """The prompt-independent image side of every interface layer, computed once per image
    (:meth:`findvl.model.interface.FindInterface.image_cache`).

    Attributes:
        levels: per level ``(src, pos)``, ``[B,hw,D]`` each (as ``FindInterface.image_levels``).
        mask_features: the heads' mask features and their resizes to each level.
        kv: per interface layer ``(key, value)``, ``[B,H,hw,D/H]`` each: the content
            attention's projections of that layer's image level (key of ``src + pos``).
        version: weights version of the interface when computed
            (:func:`findvl.model.image_cache.weights_version`); a stale cache is ignored.
    """

    levels: list[tuple[torch.Tensor, torch.Tensor]]
    mask_features: MaskFeatures
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    version: tuple | None


@dataclass
class ImageFeatures:
    """Encoded images: what the predictor caches between requests.

    Attributes:
        batch: the preprocessed batch (sizes, padding).
        pixel: pixel-decoder output.
        spatial_maps: per level ``[B,D,h,w]`` maps spatial tokens are sampled from.
    """

    batch: ImageBatch
    pixel: PixelFeatures
    spatial_maps: list[torch.Tensor]

    def source(self) -> SpatialSource:
        h, w = self.batch.pixels.shape[-2:]
        return SpatialSource(self.spatial_maps, self.batch.original_sizes, self.batch.sizes, (h, w))

    def to_original(self, masks: torch.Tensor, b: int) -> torch.Tensor:
        """``[T,h,w]`` canvas logits of image ``b`` -> ``[T,H0,W0]`` on that image as given
        (the conversion of :meth:`findvl.model.outputs.FindOutput.to_original`)."""
        h, w = self.batch.pixels.shape[-2:]
        return masks_to_original(
            masks,
            input_size=self.batch.sizes[b],
            canvas=(h, w),
            original_size=self.batch.original_sizes[b],
        )
