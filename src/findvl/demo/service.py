"""The demo's work, without any web framework: page inputs -> overlay picture + JSON records.

Every method takes what the page sends (``HxWx3`` uint8 arrays, text fields) and returns a PIL
picture and a JSON-ready dict. Bad input raises :class:`DemoInputError` naming the field.
Encoded images are kept in a small cache keyed by their pixels, so clicking again on the same
image, or trying a new vocabulary on it, costs no image forward.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from findvl.demo import records
from findvl.demo.parsing import (
    DemoInputError,
    editor_strokes,
    parse_box,
    parse_points,
    require_image,
    split_list,
    split_phrases,
)
from findvl.model.requests import InterleavedText, VisualPrompt, VisualReference
from findvl.predictor import EncodedImage, FindPredictor, as_image_tensor, prompt_from_inputs


@dataclass
class Answer:
    """One endpoint's result: the overlay picture and ``{"masks": [...], ...}``."""

    picture: Image.Image
    result: dict
    logits: np.ndarray | None = None  # interactive: the mask logits for the next round


@dataclass
class DemoService:
    """Wraps a predictor for the page.

    Args:
        predictor: the shared predictor.
        class_names / isthing: the default vocabulary (the checkpoint's).
        gallery: retrieval candidates ``(name, HxWx3 uint8)`` (the val examples).
        index: an optional search index with ``search(query_embedding, k)``.
    """

    predictor: FindPredictor
    class_names: list[str]
    isthing: list[bool]
    gallery: list[tuple[str, np.ndarray]] = field(default_factory=list)
    index: object | None = None
    cache_size: int = 16
    max_side: int = 1024  # larger uploads are downscaled first (masks are N x H x W floats)
    _cache: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- images ----------------------------------------------------------------------------
    def encode(self, image, field: str = "image") -> tuple[np.ndarray, EncodedImage]:
        array = require_image(image, field)
        try:
            rgb = as_image_tensor(array).permute(1, 2, 0).numpy()  # 3xHxW -> HxWx3
        except ValueError as error:
            raise DemoInputError(f"{field}: {error}") from None
        if max(rgb.shape[:2]) > self.max_side:
            scale = self.max_side / max(rgb.shape[:2])
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        key = hashlib.sha1(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return rgb, hit
        encoded = self.predictor.encode(rgb)
        with self._lock:
            self._cache[key] = encoded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return rgb, encoded

    def _use(self, image, field: str = "image") -> np.ndarray:
        rgb, encoded = self.encode(image, field)
        self.predictor.set_encoded(encoded)
        return rgb

    def _region(self, size, box_text: str, points_text: str, field: str) -> VisualPrompt:
        box = parse_box(box_text, f"{field} box")
        points = parse_points(points_text, f"{field} points")
        try:
            return prompt_from_inputs(
                size,
                [(x, y) for x, y, _ in points] or None,
                [lab for _, _, lab in points] or None,
                box,
            )
        except ValueError as error:
            raise DemoInputError(f"{field}: {error}") from None

    # ---- tasks -----------------------------------------------------------------------------
    def segment(
        self,
        image,
        vocabulary: str | None = None,
        threshold: float = 0.5,
        exemplar_image=None,
        exemplar_box: str = "",
        exemplar_points: str = "",
    ) -> Answer:
        """Panoptic segmentation over a vocabulary of names/descriptions (+ one exemplar)."""
        classes = split_list(vocabulary, "vocabulary") if (vocabulary or "").strip() else []
        exemplars = None
        if exemplar_image is not None and (exemplar_box.strip() or exemplar_points.strip()):
            ref, encoded = self.encode(exemplar_image, "exemplar image")
            prompt = self._region(ref.shape[:2], exemplar_box, exemplar_points, "exemplar")
            exemplars = self.predictor.exemplar_embedding(encoded, prompt.positive)[None]
        if not classes and exemplars is None:
            classes = list(self.class_names)
        if not classes and exemplars is None:
            raise DemoInputError("vocabulary: give class names or an exemplar region")
        if not 0.0 <= float(threshold) <= 1.0:
            raise DemoInputError(f"threshold: expected a number in [0, 1], got {threshold}")
        rgb = self._use(image)
        isthing = self.isthing if classes == self.class_names and exemplars is None else None
        result = self.predictor.segment(
            classes, isthing=isthing, object_threshold=float(threshold), exemplars=exemplars
        )
        names = classes + (["exemplar"] if exemplars is not None else [])
        segments = result.segments
        seg = result.segmentation.numpy()
        masks = np.zeros((len(segments), *rgb.shape[:2]), bool)
        for k, s in enumerate(segments):
            masks[k] = seg == s["id"]
        labels = [names[s["category"]] for s in segments]
        recs = records.mask_records(
            masks, [s["score"] for s in segments], labels, [s["category"] for s in segments]
        )
        return Answer(records.draw(rgb, masks, labels), {"classes": names, "masks": recs})

    def ground(self, image, phrases: str | None) -> Answer:
        """One mask per phrase (one per line, or a paragraph: one per sentence)."""
        items = split_phrases(phrases)
        rgb = self._use(image)
        result = self.predictor.ground(items)
        masks = result.masks.numpy()
        recs = records.mask_records(masks, result.scores.tolist(), items)
        return Answer(records.draw(rgb, masks, items), {"masks": recs})

    def click(
        self,
        image,
        points: str = "",
        box: str = "",
        scribble=None,
        previous: np.ndarray | None = None,
    ) -> Answer:
        """Interactive segmentation; ``previous`` (logits of the last round) enables corrections.

        ``scribble``: an image editor's value or an ``[H,W]`` mask of drawn strokes.
        """
        rgb = self._use(image)
        size = rgb.shape[:2]
        scribble = editor_strokes(scribble, size)
        parsed = parse_points(points)
        box_xyxy = parse_box(box)
        if previous is not None and tuple(np.shape(previous)) != tuple(size):
            previous = None  # a new image: start a fresh round
        try:
            pred = self.predictor.predict(
                point_coords=[(x, y) for x, y, _ in parsed] or None,
                point_labels=[lab for _, _, lab in parsed] or None,
                box=box_xyxy,
                mask_input=previous,
                scribble=scribble,
            )
        except ValueError as error:
            raise DemoInputError(str(error)) from None
        clicks = [(int(y), int(x), lab == 1) for x, y, lab in parsed]
        recs = records.mask_records(pred.masks, pred.scores.tolist(), ["object"])
        picture = records.draw(rgb, pred.masks, ["object"], clicks=clicks, box=box_xyxy)
        result = {"masks": recs, "round_with_previous_mask": previous is not None}
        return Answer(picture, result, pred.logits[0])

    def _interleaved(
        self, markup: str, reference_image, entity: int | None, box: str, points: str
    ) -> InterleavedText:
        if not (markup or "").strip():
            raise DemoInputError("text: write a sentence with entities, e.g. 'a [1]<red circle>'")
        references = {}
        if reference_image is not None and entity is not None and (box.strip() or points.strip()):
            ref, _ = self.encode(reference_image, "reference image")
            prompt = self._region(ref.shape[:2], box, points, "reference")
            tensor = torch.from_numpy(ref).permute(2, 0, 1)
            references[int(entity)] = VisualReference(tensor, prompt)
        try:
            return InterleavedText.from_markup(markup, references)
        except ValueError as error:
            raise DemoInputError(f"text: {error}") from None

    def interleave(
        self,
        image,
        markup: str,
        reference_image=None,
        entity: int | None = None,
        box: str = "",
        points: str = "",
    ) -> Answer:
        """One mask per entity of ``[id]<phrase>`` markup; entity ``entity`` may be a region."""
        text = self._interleaved(markup, reference_image, entity, box, points)
        if not text.entities:
            raise DemoInputError("text: mark at least one entity as [id]<phrase>")
        rgb = self._use(image)
        result = self.predictor.interleave(text)
        labels = [
            f"[{e.entity_id}] " + ("(region)" if e.reference else text.text[e.start : e.end])
            for e in text.entities
        ]
        masks = result.masks.numpy()
        recs = records.mask_records(masks, result.scores.tolist(), labels)
        return Answer(records.draw(rgb, masks, labels), {"text": text.text, "masks": recs})
