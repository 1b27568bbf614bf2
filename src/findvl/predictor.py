"""FindPredictor: encode an image once, answer any number of requests from cached features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from findvl.model.find import FindModel, ImageFeatures
from findvl.model.requests import (
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
)
from findvl.postprocess import OBJECT_THRESHOLD, PanopticResult, panoptic_inference, to_original


@dataclass
class MaskResult:
    """Masks on the original image: ``masks [T,H,W]`` bool, ``logits [T,H,W]``, ``scores [T]``."""

    masks: torch.Tensor
    logits: torch.Tensor
    scores: torch.Tensor


def as_image_tensor(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``HxWx3`` uint8 array or ``[3,H,W]`` tensor -> ``[3,H,W]`` tensor."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected an HxWx3 RGB array, got shape {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return image


class FindPredictor:
    """SAM-style predictor over a :class:`FindModel`.

    Args:
        model: the model (put in eval mode here).
        seed: seeds the random choice of prompt points, so answers are repeatable.
    """

    def __init__(self, model: FindModel, *, seed: int = 0) -> None:
        self.model = model.eval()
        self.seed = seed
        self._features: ImageFeatures | None = None
        self._class_cache: dict[tuple[str, ...], torch.Tensor] = {}

    @torch.no_grad()
    def set_image(self, image: torch.Tensor | np.ndarray) -> None:
        """Encode ``image`` (RGB) once; later calls reuse its features."""
        self._features = self.model.encode_images([as_image_tensor(image)])

    @property
    def features(self) -> ImageFeatures:
        if self._features is None:
            raise ValueError("no image: call set_image() first")
        return self._features

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.features.batch.original_sizes[0])

    def _run(self, request):
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            return self.model(self.features, [request], generator=generator)

    def _to_original(self, masks: torch.Tensor, out) -> torch.Tensor:
        return to_original(
            masks,
            input_size=out.input_sizes[0],
            canvas=out.canvas,
            original_size=out.original_sizes[0],
        )

    def segment(
        self,
        classes: list[str],
        *,
        isthing: list[bool] | None = None,
        object_threshold: float = OBJECT_THRESHOLD,
        overlap_threshold: float = 0.8,
    ) -> PanopticResult:
        """Panoptic segmentation over the vocabulary ``classes`` (all things by default)."""
        out = self._run(GenericSegmentation(list(classes)))
        final = out.generic_segmentation.final
        masks = self._to_original(final.masks[0], out)
        return panoptic_inference(
            final.logits[0],
            masks,
            isthing=isthing if isthing is not None else [True] * len(classes),
            object_threshold=object_threshold,
            overlap_threshold=overlap_threshold,
        )

    def _targets(self, task_out, out) -> MaskResult:
        scores = task_out.final.logits[0]  # TxN
        logits = self._to_original(task_out.best_masks()[0], out)
        return MaskResult(logits > 0, logits, scores.max(-1).values)

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

    def interleave(self, text: InterleavedText) -> MaskResult:
        """One mask per entity of an interleaved text (phrases or visual references)."""
        out = self._run(InterleaveSegmentation([text]))
        return self._targets(out.interleave_segmentation, out)

    def embed_image(self) -> torch.Tensor:
        """``[P]`` image embedding (the pooled image query), for retrieval indexes."""
        out = self._run(ImageTextRetrieval(["image"]))
        return out.image_text_retrieval.final.image[0]

    def embed_objects(self) -> torch.Tensor:
        """``[N,P]`` semantic embeddings of the object proposals (interleave rerank term)."""
        out = self._run(ImageTextRetrieval(["image"]))
        return out.image_text_retrieval.objects[0]

    def embed_query(self, query: str | InterleavedText) -> torch.Tensor:
        """``[P]`` embedding of a caption or an interleaved query; independent of the image."""
        if isinstance(query, str):
            out = self._run(ImageTextRetrieval([query]))
            return out.image_text_retrieval.final.query[0]
        out = self._run(InterleaveRetrieval([query]))
        return out.interleave_retrieval.final.query[0]
