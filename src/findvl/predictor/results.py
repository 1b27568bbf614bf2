"""Typed results of :class:`~findvl.predictor.core.FindPredictor` and the encoded image it
keeps: torch tensors (:class:`MaskResult`) or numpy arrays as SAM returns them
(:class:`Prediction`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from findvl.model.sequence_types import ImageFeatures


@dataclass
class MaskResult:
    """Masks on the original image: ``masks [T,H,W]`` bool, ``logits [T,H,W]``, ``scores [T]``.

    ``scores`` are probabilities: for target t, the softmax over proposals of the chosen one.
    """

    masks: torch.Tensor
    logits: torch.Tensor
    scores: torch.Tensor


@dataclass
class Prediction:
    """:meth:`FindPredictor.predict` output (numpy, as SAM); unpacks as ``masks, scores, logits``.

    Attributes:
        masks: ``[C,H,W]`` bool, C = 1 (or 3 with ``multimask_output``), best first.
        scores: ``[C]`` probabilities (softmax over proposals).
        logits: ``[C,H,W]`` float32 mask logits; pass ``logits[0]`` back as ``mask_input``.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray

    def __iter__(self):
        return iter((self.masks, self.scores, self.logits))


@dataclass
class EncodedImage:
    """One encoded image: features plus passes cached for it (proposals, retrieval, the
    interface's image side under ``cache["interface"]``)."""

    features: ImageFeatures
    cache: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image as given."""
        return tuple(self.features.batch.original_sizes[0])
