"""FindPredictor: encode an image once, answer any number of requests from cached features.

Habits of SAM's predictor: :meth:`FindPredictor.set_image` takes a PIL image, an ``HxWx3`` /
``HxWx4`` / ``HxW`` array or a ``[3,H,W]`` tensor; :meth:`FindPredictor.predict` takes clicks
and a box in pixel coordinates and the previous round's logits. Scores are probabilities.

Sharing: one predictor may serve several threads. The current image is per thread (one
thread's ``set_image`` never changes what another thread's requests see), model calls hold a
lock, and the caches (class tables, caption embeddings, per-image passes) are filled under it.

Image once, prompts many: the first prompt on an image also computes the interface's
prompt-independent image side (every layer's key/value projections of its image level, the
positional terms and mask features; :meth:`~findvl.model.find.FindModel.cache_image`), kept with
the image, so later phrases and clicks cost only their own part. The answers are the same.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from findvl.model import assemble
from findvl.model.find import FindModel, ImageFeatures
from findvl.model.requests import (
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
)
from findvl.model.sequence_types import InterfaceImageCache
from findvl.model.slots import proposal_slot
from findvl.postprocess import OBJECT_THRESHOLD, PanopticResult, kept_objects, panoptic_inference
from findvl.predictor import batch
from findvl.predictor.inputs import as_image_tensor, previous_logits, prompt_from_inputs
from findvl.predictor.results import EncodedImage, MaskResult, Prediction
from findvl.prototypes import prototype_set


def _lru_get(cache: OrderedDict, key, limit: int, make):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > limit:
        cache.popitem(last=False)
    return value


class FindPredictor:
    """SAM-style predictor over a :class:`FindModel`.

    Args:
        model: the model (put in eval mode here).
        seed: seeds the random choice of prompt points, so answers are repeatable.
        cache_size: class vocabularies and captions kept (least recently used dropped).
        cache_interface: keep each image's interface image side after its first prompt
            (faster prompts; memory: two ``[hw,D]`` tensors per interface layer plus the
            levels and resized mask features, about 400 MB for a 1024² image at FIND-T size).
    """

    def __init__(
        self,
        model: FindModel,
        *,
        seed: int = 0,
        cache_size: int = 64,
        cache_interface: bool = True,
    ) -> None:
        self.model = model.eval()
        self.seed = seed
        self.cache_size = cache_size
        self.cache_interface = cache_interface
        self.model.class_tables.limit = cache_size
        self._lock = threading.RLock()
        self._local = threading.local()
        self._caption_cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def from_checkpoint(
        cls, path, *, device: str = "cpu", seed: int = 0, cache_size: int = 64
    ) -> FindPredictor:
        """A predictor over the model of a model file, a checkpoint or a run directory
        (:func:`findvl.runs.load_run`; no training code is imported)."""
        from findvl.runs import load_run

        return cls(load_run(path, device=device).model, seed=seed, cache_size=cache_size)

    # ---- the current image ---------------------------------------------------------------
    def encode(self, image) -> EncodedImage:
        """Encode ``image`` (see :func:`as_image_tensor`) without making it current."""
        tensor = as_image_tensor(image)
        with self._lock, torch.no_grad():
            return EncodedImage(self.model.encode_images([tensor]))

    def set_image(self, image) -> EncodedImage:
        """Encode ``image`` once and make it this thread's current image; returns it."""
        return self.set_encoded(self.encode(image))

    def set_encoded(self, encoded: EncodedImage) -> EncodedImage:
        """Make an already encoded image this thread's current image (no forward)."""
        self._local.current = encoded
        return encoded

    def reset_image(self) -> None:
        self._local.current = None

    @property
    def encoded(self) -> EncodedImage:
        current = getattr(self._local, "current", None)
        if current is None:
            raise ValueError("no image: call set_image() first")
        return current

    @property
    def features(self) -> ImageFeatures:
        return self.encoded.features

    @property
    def image_size(self) -> tuple[int, int]:
        return self.encoded.size

    # ---- forwards ------------------------------------------------------------------------
    def interface_cache(self, encoded: EncodedImage) -> InterfaceImageCache | None:
        """The interface's image side of ``encoded``, computed on first use and kept with it
        (recomputed if the weights changed; None when ``cache_interface`` is off)."""
        if not self.cache_interface:
            return None
        with self._lock:
            cached = encoded.cache.get("interface")
            if cached is None or self.model.interface.usable_cache(cached) is None:
                cached = encoded.cache["interface"] = self.model.cache_image(encoded.features)
            return cached

    def _run(self, request, encoded: EncodedImage | None = None):
        encoded = encoded or self.encoded
        with self._lock, torch.no_grad():
            cache = self.interface_cache(encoded)
            generator = torch.Generator().manual_seed(self.seed)
            return self.model(
                encoded.features,
                [request],
                generator=generator,
                dense_masks=False,
                image_cache=cache,
            )

    def _to_original(self, masks: torch.Tensor, out) -> torch.Tensor:
        return out.to_original(masks, 0)

    def class_table(self, classes: list[str]) -> torch.Tensor:
        """``[K+1,P]`` class embeddings (+ background), cached per vocabulary (by the model,
        :attr:`~findvl.model.find.FindModel.class_tables`, invalidated when weights change)."""
        with self._lock, torch.no_grad():
            return self.model.class_embeddings(list(classes))

    def _object_pass(self, encoded: EncodedImage):
        """The image side of generic segmentation (object proposals), once per image."""
        with self._lock, torch.no_grad():
            if "objects" not in encoded.cache:
                model = self.model
                pset = prototype_set(["generic_segmentation"], model.variant)
                slots = [proposal_slot(model.interface, "p.object", 1)]
                encoded.cache["objects"] = model.interface(
                    slots,
                    pset=pset,
                    pixel=encoded.features.pixel,
                    dense_masks=False,
                    image_cache=self.interface_cache(encoded),
                )
            return encoded.cache["objects"]

    def segment(
        self,
        classes: list[str],
        *,
        isthing: list[bool] | None = None,
        object_threshold: float = OBJECT_THRESHOLD,
        overlap_threshold: float = 0.8,
        exemplars: torch.Tensor | None = None,
    ) -> PanopticResult:
        """Panoptic segmentation over the vocabulary ``classes`` (all things by default).

        The proposals are computed once per image and the class table once per vocabulary,
        so a new vocabulary on the same image, or the same vocabulary on a new image, costs
        only the part that changed.

        Args:
            exemplars: ``[E,P]`` class embeddings from regions of other images
                (:meth:`exemplar_embedding`); they are classes ``len(classes) ..`` and
                ``isthing`` (when given) covers them too.
        """
        n_ex = 0 if exemplars is None else int(exemplars.shape[0])
        if not classes and not n_ex:
            raise ValueError("classes: the vocabulary is empty")
        encoded = self.encoded
        objects = self._object_pass(encoded)
        table = self.class_table(list(classes))
        if n_ex:
            table = torch.cat([table[:-1], exemplars.to(table), table[-1:]])
        names = list(classes) + [f"exemplar {i + 1}" for i in range(n_ex)]
        with self._lock, torch.no_grad():
            scale = self.model.class_scale()
            final = assemble.generic(objects, table, scale, names).final
            keep = kept_objects(final.logits[0], object_threshold).nonzero()[:, 0]
            masks = self._proposal_masks(final.image_masks(0, keep), encoded)
        return panoptic_inference(
            final.logits[0, keep],
            masks,
            isthing=isthing if isthing is not None else [True] * len(names),
            object_threshold=object_threshold,
            overlap_threshold=overlap_threshold,
        )

    def _proposal_masks(self, masks: torch.Tensor, encoded: EncodedImage) -> torch.Tensor:
        return encoded.features.to_original(masks, 0)

    def exemplar_embedding(self, encoded: EncodedImage, region: torch.Tensor) -> torch.Tensor:
        """``[P]`` class embedding of a region of another image (a visual exemplar).

        The object proposal of ``encoded`` whose mask best overlaps ``region`` (``[H,W]`` bool
        on that image) lends its semantic embedding, the space class names are embedded in.
        """
        region = torch.as_tensor(region).bool()
        if tuple(region.shape) != tuple(encoded.size) or not bool(region.any()):
            raise ValueError(
                f"exemplar region: expected a non-empty [H,W] mask of size {encoded.size}, "
                f"got shape {tuple(region.shape)}"
            )
        with self._lock, torch.no_grad():
            masks = self._object_masks(encoded) > 0  # NxHxW
            inter = (masks & region).flatten(1).sum(1).float()
            union = (masks | region).flatten(1).sum(1).float().clamp(min=1)
            semantic = self._object_pass(encoded).final["p.object"].semantic
            return semantic[0, int((inter / union).argmax())]

    def _object_masks(self, encoded: EncodedImage) -> torch.Tensor:
        """``[N,H,W]`` mask logits of every object proposal of ``encoded``, on the image."""
        objects = self._object_pass(encoded)
        final = objects.final["p.object"]
        logits = torch.einsum("qc,chw->qhw", final.pixel[0], objects.mask_features[0])
        return self._proposal_masks(logits, encoded)

    def _targets(self, task_out, out) -> MaskResult:
        logits = task_out.final.logits[0]  # TxN
        probs = logits.float().softmax(-1)
        mask_logits = self._to_original(task_out.best_masks()[0], out)
        return MaskResult(mask_logits > 0, mask_logits, probs.max(-1).values)

    def ground(self, phrases: list[str]) -> MaskResult:
        """One mask per referring phrase."""
        out = self._run(GroundedSegmentation([list(phrases)]))
        return self._targets(out.grounded_segmentation, out)

    def click(
        self, prompts: list[VisualPrompt], *, previous: torch.Tensor | None = None
    ) -> MaskResult:
        """One mask per visual prompt (points, boxes, scribbles, ... rasterised to masks).

        ``previous``: ``[H,W]`` logits of the previous round (corrections), as returned here.
        """
        prev = None if previous is None else [previous]
        out = self._run(InteractiveSegmentation([list(prompts)], previous=prev))
        return self._targets(out.interactive_segmentation, out)

    def ground_batch(
        self, images: list[EncodedImage], phrases: list[list[str]]
    ) -> list[MaskResult]:
        """:meth:`ground` of ``phrases[b]`` on ``images[b]`` (from :meth:`encode`), all in
        one forward; equal to one call per image (:mod:`findvl.predictor.batch`)."""
        return batch.ground_batch(self, images, phrases)

    def click_batch(
        self, images: list[EncodedImage], prompts: list[list[VisualPrompt]]
    ) -> list[MaskResult]:
        """:meth:`click` of ``prompts[b]`` on ``images[b]``, all in one forward."""
        return batch.click_batch(self, images, prompts)

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = False,
        *,
        scribble=None,
        radius: int = 3,
    ) -> Prediction:
        """Interactive segmentation of the current image, in pixel coordinates (as SAM).

        Args:
            point_coords: ``[N,2]`` clicks ``(x, y)``.
            point_labels: ``[N]``, 1 for a positive click, 0 for a negative one.
            box: ``[4]`` ``(x0, y0, x1, y1)``.
            mask_input: logits of the previous round, ``[H,W]`` or ``[1,H,W]`` (any size;
                resized to the image), e.g. ``logits[0]`` of the previous prediction.
            multimask_output: three masks (the three most probable proposals) instead of one.
            scribble: ``[H,W]`` bool, a drawn positive region (strokes), added to the prompt.
            radius: disk radius of a click, pixels.
        """
        size = self.image_size
        prompt = prompt_from_inputs(
            size, point_coords, point_labels, box, scribble=scribble, radius=radius
        )
        previous = None if mask_input is None else previous_logits(mask_input, size)
        out = self._run(InteractiveSegmentation([[prompt]], previous=previous))
        task_out = out.interactive_segmentation
        probs = task_out.final.logits[0, 0].float().softmax(-1)  # N
        k = 3 if multimask_output else 1
        top = probs.topk(min(k, probs.numel()))
        logits = self._to_original(task_out.final.image_masks(0, top.indices), out)
        return Prediction(
            (logits > 0).numpy(), top.values.numpy(), logits.numpy().astype(np.float32)
        )

    def interleave(self, text: InterleavedText) -> MaskResult:
        """One mask per entity of an interleaved text (phrases or visual references)."""
        out = self._run(InterleaveSegmentation([text]))
        return self._targets(out.interleave_segmentation, out)

    # ---- retrieval -----------------------------------------------------------------------
    def _retrieval_pass(self, encoded: EncodedImage):
        with self._lock:
            if "retrieval" not in encoded.cache:
                out = self._run(ImageTextRetrieval(["image"]), encoded).image_text_retrieval
                encoded.cache["retrieval"] = (out.final.image[0], out.scored_objects()[0])
            return encoded.cache["retrieval"]

    def embed_image(self) -> torch.Tensor:
        """``[P]`` image embedding (the pooled image query), for retrieval indexes.

        One forward per image, shared with :meth:`embed_objects`.
        """
        return self._retrieval_pass(self.encoded)[0]

    def embed_objects(self) -> torch.Tensor:
        """``[N,P]`` semantic embeddings of the object proposals (interleave rerank term; the
        image embedding alone, ``[1,P]``, where the prototypes give retrieval no proposals)."""
        return self._retrieval_pass(self.encoded)[1]

    def _caption(self, caption: str) -> torch.Tensor:
        return self._run(ImageTextRetrieval([caption])).image_text_retrieval.final.query[0]

    def embed_query(self, query: str | InterleavedText) -> torch.Tensor:
        """``[P]`` embedding of a caption or an interleaved query; independent of the image.

        Captions are cached (the current image only provides a context for the forward).
        """
        if isinstance(query, str):
            with self._lock:
                return _lru_get(
                    self._caption_cache, query, self.cache_size, lambda: self._caption(query)
                )
        out = self._run(InterleaveRetrieval([query]))
        return out.interleave_retrieval.final.query[0]
