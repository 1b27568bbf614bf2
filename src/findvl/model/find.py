"""FindModel: frozen vision + language encoders, pixel decoder, interface and heads."""

from __future__ import annotations

import typing

import torch
from torch import nn

from findvl.config import ConventionsConfig, PixelScores, Variant
from findvl.encoders.language import LanguageEncoder, check_texts
from findvl.encoders.pixel_decoder import PixelDecoder
from findvl.encoders.preprocess import ImageBatch, preprocess_images
from findvl.encoders.vision import VisionEncoder
from findvl.layers import sine_positions
from findvl.model.calibration import text_calibration
from findvl.model.conventions import check_conventions
from findvl.model.image_cache import ClassTableCache
from findvl.model.interface import FindInterface
from findvl.model.outputs import FindOutput
from findvl.model.requests import Request
from findvl.model.sequence_types import (
    ImageFeatures,
    InterfaceImageCache,
    PointSampling,
    ProjectedText,
)
from findvl.model.tasks import TASK_TABLE, SlotContext, check_requests, shared_slots
from findvl.model.tasks.generic_segmentation import class_embeddings
from findvl.prototypes import TASKS, prototype_set

__all__ = ["FindModel", "ImageFeatures"]


class FindModel(nn.Module):
    """FIND: one set of weights for six tasks.

    The model encodes images and texts and runs the interface; what each task adds to the
    sequence and reads out of it is its module in :mod:`findvl.model.tasks`.

    Args:
        vision: frozen (or tiny, trainable) vision encoder.
        pixel_decoder: FPN + transformer pixel decoder.
        language: language encoder.
        interface: the FIND interface (with its heads).
        variant: prototype variant, ``"official"`` or ``"paper"``.
        max_spatial_points: points drawn per image for spatial tokens.
        pixel_scores: ``"dot"`` (released weights: raw dot products for interactive and visual
            interleave scores) or ``"cosine"`` (``exp(logit_scale)·cos`` everywhere).
        lang_proj_std: init std of ``lang_proj``; None: ``1/sqrt(language.dim)``. Projected
            tokens must start at a magnitude comparable to the queries, or every caption,
            phrase and legend query starts as the same vector.
        logit_scale_init: initial log temperature of the cosine scores.
        class_logit_scale_init: None (official): class scores share ``logit_scale``; else a
            separate learned temperature for the class scores of generic segmentation.
        whiten_text: keep a ``[C,C]`` whitening of the frozen text features (set by
            :meth:`calibrate_text`; identity until then).
        conventions: point sampling, class prompts and grounding cap the weights expect
            (:mod:`findvl.model.conventions`); None: findvl's own.
    """

    def __init__(
        self,
        *,
        vision: VisionEncoder,
        pixel_decoder: PixelDecoder,
        language: LanguageEncoder,
        interface: FindInterface,
        variant: Variant = "official",
        max_spatial_points: int = 512,
        pixel_scores: PixelScores = "dot",
        lang_proj_std: float | None = None,
        logit_scale_init: float = 1.0,
        class_logit_scale_init: float | None = None,
        whiten_text: bool = False,
        conventions: ConventionsConfig | None = None,
    ) -> None:
        super().__init__()
        self.vision = vision
        self.pixel_decoder = pixel_decoder
        self.language = language
        self.interface = interface
        hidden = interface.hidden_dim
        self.lang_proj = nn.Parameter(torch.empty(language.dim, hidden))
        if lang_proj_std is None:
            lang_proj_std = language.dim**-0.5
        nn.init.trunc_normal_(
            self.lang_proj, std=lang_proj_std, a=-2 * lang_proj_std, b=2 * lang_proj_std
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.class_logit_scale = (
            None
            if class_logit_scale_init is None
            else nn.Parameter(torch.tensor(float(class_logit_scale_init)))
        )
        # Standardisation of the frozen text features before lang_proj (identity by default,
        # as the released weights; set by calibrate_text).
        self.register_buffer("text_shift", torch.zeros(language.dim))
        self.register_buffer("text_scale", torch.ones(language.dim))
        if whiten_text:
            self.register_buffer("text_whiten", torch.eye(language.dim))
        else:
            self.text_whiten = None
        for name, value, hint in (
            ("variant", variant, Variant),
            ("pixel_scores", pixel_scores, PixelScores),
        ):
            if value not in typing.get_args(hint):
                raise ValueError(f"{name}={value!r}: expected one of {list(typing.get_args(hint))}")
        self.variant = variant
        self.max_spatial_points = max_spatial_points
        self.pixel_scores = pixel_scores
        self.conventions = check_conventions(conventions or ConventionsConfig())
        # class tables per vocabulary, invalidated by any change of the weights
        self.class_tables = ClassTableCache()

    def point_sampling(self) -> PointSampling:
        """How spatial tokens are drawn from prompts (budget and the weights' conventions)."""
        c = self.conventions
        return PointSampling(self.max_spatial_points, c.point_convention, c.points_per_level)

    @property
    def device(self) -> torch.device:
        return self.lang_proj.device

    # ---- encoders -----------------------------------------------------------------------
    def encode_images(self, images: list[torch.Tensor] | ImageBatch) -> ImageFeatures:
        """RGB images ``[3,H,W]`` (0..255) or a preprocessed batch -> :class:`ImageFeatures`."""
        batch = (
            images
            if isinstance(images, ImageBatch)
            else preprocess_images(images, self.vision.norm)
        )
        batch = batch.to(self.device)
        feats = self.vision.forward_features(batch.pixels)
        pixel = self.pixel_decoder(feats, batch.valid_mask, batch.pixels)
        levels = self.interface.image_levels(pixel)
        maps = self.interface.spatial_token_levels(levels, pixel)
        return ImageFeatures(batch, pixel, maps)

    def cache_image(self, features: ImageFeatures) -> InterfaceImageCache:
        """The interface's image side of ``features``, computed once
        (:meth:`FindInterface.image_cache`): a forward given it as ``image_cache``, under
        ``no_grad`` in eval mode with the same weights, costs only its prompts' part."""
        with torch.no_grad():
            return self.interface.image_cache(features.pixel)

    def encode_text(self, texts: list[str], field: str = "texts") -> ProjectedText:
        """Texts -> projected token features ``[T,L,D]``."""
        check_texts(texts, field)
        tokens = self.language.encode(texts).to(self.device)
        features = (tokens.features.float() - self.text_shift) / self.text_scale
        if self.text_whiten is not None:
            features = features @ self.text_whiten
        features = features * tokens.mask[..., None]  # padding stays zero
        projected = features @ self.lang_proj
        positions = None
        if self.conventions.text_positions:
            positions = sine_positions(projected.shape[1], projected.shape[2]).to(projected)
            positions = positions.expand_as(projected)
        return ProjectedText(projected, tokens.mask, tokens.offsets, positions)

    @torch.no_grad()
    def calibrate_text(self, texts: list[str], batch_size: int = 256) -> None:
        """Set the fixed text standardisation (and whitening) from the token features of
        ``texts``, a sample of what the model will read; see :mod:`findvl.model.calibration`."""
        check_texts(texts, "calibrate_text.texts")
        starts = range(0, len(texts), batch_size)
        chunks = [self.language.encode(texts[i : i + batch_size]) for i in starts]
        tokens = torch.cat([c.features[c.mask].float() for c in chunks]).to(self.device)  # NxC
        shift, scale, whiten = text_calibration(tokens, whiten=self.text_whiten is not None)
        self.text_shift.copy_(shift)
        self.text_scale.copy_(scale)
        if whiten is not None:
            self.text_whiten.copy_(whiten)

    # ---- forward ------------------------------------------------------------------------
    def forward(
        self,
        images: list[torch.Tensor] | ImageBatch | ImageFeatures,
        requests: list[Request],
        *,
        generator: torch.Generator | list[torch.Generator] | None = None,
        all_layer_masks: bool = False,
        dense_masks: bool = True,
        image_cache: InterfaceImageCache | None = None,
    ) -> FindOutput:
        """One joint forward for any mix of tasks: the shared slots, then each task's slots in
        table order (:data:`~findvl.model.tasks.TASK_TABLE`), one interface pass, then each
        task's output.

        Args:
            images: ``B`` RGB images ``[3,H,W]``, a preprocessed batch, or cached features.
            requests: at most one request per task; per-image fields have ``B`` entries.
            generator: random source for drawing prompt points (seed it in evaluation); a
                list of ``B``: one per image (grounding / interactive prompts), so a batch
                draws what each image draws alone.
            all_layer_masks: full-resolution masks at every layer (for deep supervision).
            dense_masks: False: no mask logits at any layer; each layer's scores keep the mask
                embeddings and mask features whose product they are
                (:class:`~findvl.model.outputs.ProposalMasks`), for a criterion that reads masks
                only at points and on matched proposals, or a caller that needs few of them.
            image_cache: :meth:`cache_image` of ``images`` (cached features): the same
                outputs without the interface's image-side work (inference only).
        """
        feats = images if isinstance(images, ImageFeatures) else self.encode_images(images)
        b = feats.batch.pixels.shape[0]
        by_task = check_requests(requests, b)
        pset = prototype_set([t for t in TASKS if t in by_task], self.variant)
        context = SlotContext(feats, frozenset(s.key for s in pset.slots), generator)
        slots = shared_slots(self.interface, context.keys, b)
        built = {}
        for name, req in by_task.items():  # table order: the order of the slots
            built[name] = TASK_TABLE[type(req)].slots(self, context, req)
            slots += built[name].slots
        previous = [t.previous_mask for t in built.values() if t.previous_mask is not None]
        out = self.interface(
            slots,
            pset=pset,
            pixel=feats.pixel,
            previous_mask=previous[0] if previous else None,
            all_layer_masks=all_layer_masks,
            dense_masks=dense_masks,
            image_cache=image_cache,
        )
        h, w = feats.batch.pixels.shape[-2:]
        result = FindOutput(
            input_sizes=feats.batch.sizes,
            original_sizes=feats.batch.original_sizes,
            canvas=(h, w),
            logit_scale=self.logit_scale,
        )
        for name, req in by_task.items():
            setattr(result, name, TASK_TABLE[type(req)].assemble(self, out, req, built[name]))
        return result

    def class_scale(self) -> torch.Tensor:
        """The temperature of generic segmentation's class scores (``exp``)."""
        if self.class_logit_scale is None:
            return self.logit_scale.exp()
        return self.class_logit_scale.exp()

    def class_embeddings(self, classes: list[str]) -> torch.Tensor:
        """Semantic embeddings ``[K+1,P]`` of class names (+ ``background``), image-free
        (:func:`findvl.model.tasks.generic_segmentation.class_embeddings`)."""
        return class_embeddings(self, classes)
