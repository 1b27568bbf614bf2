"""FindModel: frozen vision + language encoders, pixel decoder, interface and heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from findvl.config import ConventionsConfig
from findvl.encoders.language import LanguageEncoder, check_texts
from findvl.encoders.pixel_decoder import PixelDecoder, PixelFeatures
from findvl.encoders.preprocess import ImageBatch, preprocess_images
from findvl.encoders.vision import VisionEncoder
from findvl.model import assemble
from findvl.model.calibration import text_calibration
from findvl.model.conventions import check_conventions, class_text
from findvl.model.interface import FindInterface, InterfaceOutput, SlotInput
from findvl.model.outputs import FindOutput
from findvl.model.requests import Request, check_requests
from findvl.model.slots import (
    ProjectedText,
    SpatialSource,
    interleave_text_slot,
    memory_slot,
    previous_masks,
    proposal_slot,
    query_slot,
    reference_slot,
    spatial_slot,
    splice_visual_entities,
    text_slot,
)
from findvl.prototypes import TASKS, PrototypeSet, prototype_set


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


class FindModel(nn.Module):
    """FIND: one set of weights for six tasks.

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
        variant: str = "official",
        max_spatial_points: int = 512,
        pixel_scores: str = "dot",
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
        hidden = interface.query_feat.weight.shape[1]
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
        self.variant = variant
        self.max_spatial_points = max_spatial_points
        if pixel_scores not in ("dot", "cosine"):
            raise ValueError(f"pixel_scores={pixel_scores!r}: expected 'dot' or 'cosine'")
        self.pixel_scores = pixel_scores
        self.conventions = check_conventions(conventions or ConventionsConfig())

    def _point_options(self) -> dict:
        c = self.conventions
        return {"convention": c.point_convention, "per_level": c.points_per_level}

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

    def encode_text(self, texts: list[str], field: str = "texts") -> ProjectedText:
        """Texts -> projected token features ``[T,L,D]``."""
        check_texts(texts, field)
        tokens = self.language.encode(texts).to(self.device)
        features = (tokens.features.float() - self.text_shift) / self.text_scale
        if self.text_whiten is not None:
            features = features @ self.text_whiten
        features = features * tokens.mask[..., None]  # padding stays zero
        return ProjectedText(features @ self.lang_proj, tokens.mask, tokens.offsets)

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
        generator: torch.Generator | None = None,
        all_layer_masks: bool = False,
    ) -> FindOutput:
        """One joint forward for any mix of tasks.

        Args:
            images: ``B`` RGB images ``[3,H,W]``, a preprocessed batch, or cached features.
            requests: at most one request per task; per-image fields have ``B`` entries.
            generator: random source for drawing prompt points (seed it in evaluation).
            all_layer_masks: full-resolution masks at every layer (for deep supervision).
        """
        feats = images if isinstance(images, ImageFeatures) else self.encode_images(images)
        b = feats.batch.pixels.shape[0]
        by_task = check_requests(requests, b)
        pset = prototype_set([t for t in TASKS if t in by_task], self.variant)
        slots, info = self._slots(feats, by_task, pset, generator)
        previous = info.get("previous")
        out = self.interface(
            slots,
            pset=pset,
            pixel=feats.pixel,
            previous_mask=previous,
            all_layer_masks=all_layer_masks,
        )
        h, w = feats.batch.pixels.shape[-2:]
        result = FindOutput(
            input_sizes=feats.batch.sizes,
            original_sizes=feats.batch.original_sizes,
            canvas=(h, w),
            logit_scale=self.logit_scale,
        )
        self._assemble(result, out, by_task, slots, info)
        return result

    def _slots(self, feats, by_task, pset: PrototypeSet, generator):
        b = feats.batch.pixels.shape[0]
        slots: list[SlotInput] = []
        info: dict = {}
        keys = {s.key for s in pset.slots}
        if "p.object" in keys:
            slots.append(proposal_slot(self.interface, "p.object", b))
        if "q.image" in keys:
            slots.append(query_slot(self.interface, "q.image", [1] * b))
        if (req := by_task.get("grounded_segmentation")) is not None:
            flat = [p for phrases in req.phrases for p in phrases]
            text = self.encode_text(flat, "grounded_segmentation.phrases")
            groups, start = [], 0
            for phrases in req.phrases:
                groups.append(list(range(start, start + len(phrases))))
                start += len(phrases)
            task = "grounded_segmentation"
            slots.append(proposal_slot(self.interface, f"{task}/p.grounding", b))
            slots.append(
                query_slot(self.interface, f"{task}/q.description", [len(p) for p in req.phrases])
            )
            slots.append(text_slot(f"{task}/t.description", text, groups))
        if (req := by_task.get("interactive_segmentation")) is not None:
            task = "interactive_segmentation"
            slots.append(proposal_slot(self.interface, f"{task}/p.segment", b))
            slots.append(
                query_slot(self.interface, f"{task}/q.spatial", [len(p) for p in req.prompts])
            )
            slots.append(
                spatial_slot(
                    self.interface,
                    f"{task}/t.spatial",
                    feats.source(),
                    req.prompts,
                    max_points=self.max_spatial_points,
                    generator=generator,
                    **self._point_options(),
                    field="interactive_segmentation.prompts",
                )
            )
            if req.previous is not None and f"{task}/m.spatial" in keys:
                slots.append(memory_slot(self.interface, f"{task}/m.spatial", b))
                info["previous"] = previous_masks(
                    req.previous, feats.pixel.mask_features, feats.batch
                )
        if (req := by_task.get("image_text_retrieval")) is not None:
            text = self.encode_text(req.captions, "image_text_retrieval.captions")
            task = "image_text_retrieval"
            slots.append(query_slot(self.interface, f"{task}/q.caption", [1] * b))
            slots.append(text_slot(f"{task}/t.caption", text, [[i] for i in range(b)]))
        for task in ("interleave_segmentation", "interleave_retrieval"):
            if (req := by_task.get(task)) is not None:
                slots += self._interleave_slots(task, req.texts, feats, generator, info)
        return slots, info

    def _interleave_slots(self, task, items, feats, generator, info):
        b = len(items)
        spliced = [
            splice_visual_entities(item, f"{task}.texts[{i}]") for i, item in enumerate(items)
        ]
        text = self.encode_text([s[0] for s in spliced], f"{task}.texts")
        visual = [[e.reference is not None for e in item.entities] for item in items]
        info[f"{task}.visual"] = visual
        slots = []
        if task == "interleave_segmentation":
            slots.append(proposal_slot(self.interface, f"{task}/p.entity", b))
            slots.append(
                query_slot(self.interface, f"{task}/q.entity", [len(i.entities) for i in items])
            )
        else:
            slots.append(query_slot(self.interface, f"{task}/q.interleave", [1] * b))
        slots.append(
            interleave_text_slot(
                self.interface, f"{task}/t.interleave", text, [s[1] for s in spliced], visual
            )
        )
        resolve = self._reference_resolver(items, feats)
        ref = reference_slot(
            self.interface,
            f"{task}/t.spatial",
            items,
            resolve,
            max_points=self.max_spatial_points,
            generator=generator,
            **self._point_options(),
            field=f"{task}.texts",
        )
        if ref is not None:
            slots.append(ref)
        return slots

    def _reference_resolver(self, items, feats: ImageFeatures):
        """Encode every reference image once; map (image b, entity e) to its source row."""
        others = [
            (b, e, ent.reference.image)
            for b, item in enumerate(items)
            for e, ent in enumerate(item.entities)
            if ent.reference is not None and ent.reference.image is not None
        ]
        table = {}
        if others:
            ref_feats = self.encode_images([img for _, _, img in others])
            ref_source = ref_feats.source()
            table = {(b, e): (ref_source, row) for row, (b, e, _) in enumerate(others)}
        own = feats.source()
        return lambda b, e: table.get((b, e), (own, b))

    def class_scale(self) -> torch.Tensor:
        """The temperature of generic segmentation's class scores (``exp``)."""
        if self.class_logit_scale is None:
            return self.logit_scale.exp()
        return self.class_logit_scale.exp()

    def _assemble(self, result: FindOutput, out: InterfaceOutput, by_task, slots, info) -> None:
        scale = self.logit_scale.exp()
        cap = self.conventions.grounding_scale_cap
        valid = {s.key: s.valid for s in slots}
        if (req := by_task.get("generic_segmentation")) is not None:
            table = self.class_embeddings(req.classes)
            result.generic_segmentation = assemble.generic(
                out, table, self.class_scale(), req.classes
            )
        if "grounded_segmentation" in by_task:
            result.grounded_segmentation = assemble.targeted(
                out,
                "grounded_segmentation",
                "p.grounding",
                "q.description",
                valid,
                scale if cap is None else scale.clamp(max=cap),
                "semantic",
            )
        if "interactive_segmentation" in by_task:
            result.interactive_segmentation = assemble.targeted(
                out,
                "interactive_segmentation",
                "p.segment",
                "q.spatial",
                valid,
                scale,
                "pixel" if self.pixel_scores == "dot" else "pixel-cosine",
            )
        if "image_text_retrieval" in by_task:
            result.image_text_retrieval = assemble.retrieval(out, "image_text_retrieval/q.caption")
        if "interleave_segmentation" in by_task:
            result.interleave_segmentation = assemble.interleave(
                out, valid, info["interleave_segmentation.visual"], scale, self.pixel_scores
            )
        if "interleave_retrieval" in by_task:
            result.interleave_retrieval = assemble.retrieval(
                out, "interleave_retrieval/q.interleave"
            )

    def class_embeddings(self, classes: list[str]) -> torch.Tensor:
        """Semantic embeddings ``[K+1,P]`` of class names (+ ``background``), image-free.

        The class query attends only its class tokens, so it is computed in a text-only pass.
        """
        names = [class_text(n, self.conventions.class_prompt) for n in [*classes, "background"]]
        text = self.encode_text(names, "generic_segmentation.classes")
        pset = prototype_set(["generic_segmentation"], self.variant)
        k = len(names)
        slots = [
            query_slot(self.interface, "generic_segmentation/q.class", [1] * k),
            text_slot("generic_segmentation/t.class", text, [[i] for i in range(k)]),
        ]
        out = self.interface(slots, pset=pset, pixel=None)
        return out.final["generic_segmentation/q.class"].semantic[:, 0]
