"""Image preprocessing without torchvision: resize the longer side, normalise, pad to /32."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ImageNorm:
    """How one vision encoder wants its pixels.

    Attributes:
        mean: per-channel mean on the 0..255 scale.
        std: per-channel std on the 0..255 scale.
        longest_side: resize so the longer side equals this (None keeps the size).
        pad_multiple: pad height and width up to a multiple of this.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    longest_side: int | None = None
    pad_multiple: int = 32


@dataclass
class ImageBatch:
    """A padded batch of normalised images.

    Attributes:
        pixels: ``[B,3,H,W]`` float, normalised; padding is zero after normalisation.
        sizes: per image ``(h, w)`` of the valid (unpadded) region inside ``pixels``.
        original_sizes: per image ``(h, w)`` before resizing.
    """

    pixels: torch.Tensor
    sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    def to(self, device: torch.device | str) -> ImageBatch:
        return ImageBatch(self.pixels.to(device), self.sizes, self.original_sizes)

    @property
    def valid_mask(self) -> torch.Tensor:
        """``[B,H,W]`` bool, True inside each image's valid region."""
        b, _, h, w = self.pixels.shape
        mask = torch.zeros(b, h, w, dtype=torch.bool, device=self.pixels.device)
        for i, (vh, vw) in enumerate(self.sizes):
            mask[i, :vh, :vw] = True
        return mask


def _check_image(image: torch.Tensor, index: int) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"images[{index}]: expected a [3,H,W] tensor, got {shape}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"images[{index}]: empty image of shape {tuple(image.shape)}")


def resize_longest_side(image: torch.Tensor, longest_side: int) -> torch.Tensor:
    """``[3,H,W]`` float -> ``[3,h,w]`` with ``max(h,w) == longest_side``, aspect kept."""
    h, w = image.shape[-2:]
    scale = longest_side / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) == (h, w):
        return image
    return F.interpolate(
        image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
    )[0]


def preprocess_images(images: list[torch.Tensor], norm: ImageNorm) -> ImageBatch:
    """Turn RGB images (``[3,H,W]``, uint8 or float on 0..255) into a padded, normalised batch."""
    if len(images) == 0:
        raise ValueError("images: the batch is empty")
    mean = torch.tensor(norm.mean).view(3, 1, 1)
    std = torch.tensor(norm.std).view(3, 1, 1)
    resized, original = [], []
    for index, image in enumerate(images):
        _check_image(image, index)
        original.append((int(image.shape[1]), int(image.shape[2])))
        x = image.float()
        if norm.longest_side is not None:
            x = resize_longest_side(x, norm.longest_side)
        resized.append((x - mean.to(x.device)) / std.to(x.device))
    m = norm.pad_multiple
    height = -(-max(x.shape[1] for x in resized) // m) * m
    width = -(-max(x.shape[2] for x in resized) // m) * m
    pixels = resized[0].new_zeros(len(resized), 3, height, width)
    for i, x in enumerate(resized):
        pixels[i, :, : x.shape[1], : x.shape[2]] = x
    sizes = [(int(x.shape[1]), int(x.shape[2])) for x in resized]
    return ImageBatch(pixels=pixels, sizes=sizes, original_sizes=original)
