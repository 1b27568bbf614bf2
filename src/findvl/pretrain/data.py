"""One split in memory: pixels as the CLIP adapter feeds them, per-patch labels, tokenised captions.

Pixels go through the same path as at inference with
:class:`~findvl.encoders.hf_vision.ClipVisionAdapter` loaded with ``grid_stride`` and
``longest_side = image_size * grid_stride / patch_size``: resize the longer side to that,
normalise, pad, then resample so each ViT patch covers ``grid_stride`` pixels. With the defaults
(64 px, patch 4, grid stride 4) that is the 64 px image itself, normalised; the exported model
sees at inference exactly the pixels it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from findvl.data.readers.coco import read_panoptic
from findvl.data.readers.dataset import DatasetPaths, Sample, load_dataset
from findvl.encoders.hf_vision import resample_to_patch_grid
from findvl.encoders.preprocess import ImageNorm
from findvl.images import read_image
from findvl.pretrain.negatives import REPLACEMENT_KINDS, NegativeVocabulary, caption_negatives

VOID = "void"


def adapter_longest_side(image_size: int, patch_size: int, grid_stride: int) -> int:
    """The ``longest_side`` at which the adapter's ``grid_stride`` grid is the patch grid."""
    side = image_size * grid_stride // patch_size
    if image_size % patch_size or side % 32:
        raise ValueError(
            f"image_size {image_size}, patch_size {patch_size}, grid_stride {grid_stride}: "
            "the image must be a whole number of patches and image_size * grid_stride / "
            "patch_size a multiple of 32 (the adapter pads to multiples of 32)"
        )
    return side


@dataclass(frozen=True)
class ClassTable:
    """The dense head's classes: ``void`` (index 0), then one per panoptic category.

    Attributes:
        names: ``K`` names, ``void`` first.
        category_ids: the ``K - 1`` panoptic category ids of classes ``1..K-1``.
        isthing: ``K`` flags, True for thing categories (void and stuff are False).
    """

    names: tuple[str, ...]
    category_ids: tuple[int, ...]
    isthing: tuple[bool, ...]

    def class_of(self) -> dict[int, int]:
        return {cid: i + 1 for i, cid in enumerate(self.category_ids)}


@dataclass
class PretrainData:
    """Tensors of one split (images without captions are left out).

    Attributes:
        pixels: ``[N,3,S,S]`` float32, normalised, ``S = image_size``.
        patch_counts: ``[N,g*g,K]`` int16 pixels of each class in each patch (row-major patch
            grid ``g = S/patch``; class 0 is void, i.e. unlabelled or padding).
        caption_ids: ``[M,L]`` int64 token ids, right-padded with EOS.
        caption_mask: ``[M,L]`` bool, True at real tokens.
        caption_image: ``[M]`` int64 index (into the N images) of each caption, non-decreasing.
        classes: the ``K`` classes of ``patch_counts``.
        image_ids: the N image ids.
        negative_ids: ``[M,R,L]`` token ids of ``R`` hard negative captions of each caption
            (:mod:`findvl.pretrain.negatives`), or None when built without them.
        negative_mask: ``[M,R,L]`` bool, True at real tokens; a row with no True is a
            negative that could not be made (the caption holds no word to swap).
        negative_kinds: the kind of each of the ``R`` negatives (``"shape"``,
            ``"colour_swap"``, ...).
        patch_colours: ``[N,g*g,C+1]`` int16 pixels of each of ``C`` palette colours among
            the thing pixels of each patch (index 0: pixels of no thing), or None.
    """

    pixels: torch.Tensor
    patch_counts: torch.Tensor
    caption_ids: torch.Tensor
    caption_mask: torch.Tensor
    caption_image: torch.Tensor
    classes: ClassTable
    image_ids: list[int]
    negative_ids: torch.Tensor | None = None
    negative_mask: torch.Tensor | None = None
    negative_kinds: tuple[str, ...] = ()
    patch_colours: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def subset(self, indices: torch.Tensor) -> PretrainData:
        """The images ``indices`` (sorted) with their captions."""
        indices = indices.sort().values
        remap = torch.full((len(self),), -1, dtype=torch.long)
        remap[indices] = torch.arange(len(indices))
        keep = remap[self.caption_image] >= 0
        return PretrainData(
            pixels=self.pixels[indices],
            patch_counts=self.patch_counts[indices],
            caption_ids=self.caption_ids[keep],
            caption_mask=self.caption_mask[keep],
            caption_image=remap[self.caption_image[keep]],
            classes=self.classes,
            image_ids=[self.image_ids[i] for i in indices.tolist()],
            negative_ids=None if self.negative_ids is None else self.negative_ids[keep],
            negative_mask=None if self.negative_mask is None else self.negative_mask[keep],
            negative_kinds=self.negative_kinds,
            patch_colours=None if self.patch_colours is None else self.patch_colours[indices],
        )

    def sample_captions(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B]`` image indices -> ``[B]`` caption indices, one caption drawn per image."""
        counts = torch.bincount(self.caption_image, minlength=len(self))
        starts = torch.cumsum(counts, 0) - counts
        draw = torch.rand(len(images), generator=generator)
        return starts[images] + (draw * counts[images]).long().clamp(max=counts[images] - 1)


def read_class_table(root: str | Path, split: str) -> ClassTable:
    """The :class:`ClassTable` of a split's panoptic categories (sorted by id)."""
    paths = DatasetPaths.standard(root, split)
    _, categories = read_panoptic(paths.panoptic_json, paths.panoptic_dir, paths.image_dir)
    categories = sorted(categories, key=lambda c: c.id)
    return ClassTable(
        names=(VOID, *(c.name for c in categories)),
        category_ids=tuple(c.id for c in categories),
        isthing=(False, *(bool(c.isthing) for c in categories)),
    )


def _read_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(read_image(path)).permute(2, 0, 1)


def _class_map(sample: Sample, class_of: dict[int, int]) -> torch.Tensor:
    """``[H,W]`` int64 class index per pixel (0 void)."""
    ids = sample.panoptic.segment_ids()
    out = np.zeros(ids.shape, dtype=np.int64)
    for segment in sample.panoptic.segments:
        out[ids == segment.id] = class_of.get(segment.category_id, 0)
    return torch.from_numpy(out)


def colour_map(
    image: torch.Tensor, classes: torch.Tensor, isthing: torch.Tensor, palette: torch.Tensor
) -> torch.Tensor:
    """``[H,W]`` index of the nearest of the ``[C,3]`` palette colours (+1) at thing pixels,
    0 elsewhere, from a uint8 ``[3,H,W]`` image and its ``[H,W]`` class map."""
    rgb = image.permute(1, 2, 0).float()  # HxWx3
    nearest = ((rgb[..., None, :] - palette.float()) ** 2).sum(-1).argmin(-1) + 1  # HxW
    return torch.where(isthing[classes], nearest, torch.zeros_like(nearest))


def patch_class_counts(classes: torch.Tensor, *, side: int, patch: int, num_classes: int):
    """``[H,W]`` class map -> ``[g*g,K]`` pixel counts per patch of the resized, padded image."""
    h, w = classes.shape
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    resized = F.interpolate(classes[None, None].float(), size=size, mode="nearest")[0, 0].long()
    padded = F.pad(resized, (0, side - size[1], 0, side - size[0]))  # void at bottom/right
    g = side // patch
    onehot = F.one_hot(padded, num_classes).to(torch.int16)  # SxSxK
    return onehot.reshape(g, patch, g, patch, num_classes).sum((1, 3)).reshape(g * g, -1)


def adapter_pixels(
    images: list[torch.Tensor], *, norm: ImageNorm, patch: int, grid_stride: int
) -> torch.Tensor:
    """uint8 ``[3,H,W]`` images -> ``[B,3,S,S]``, what the adapter feeds its backbone.

    The same operations as :func:`~findvl.encoders.preprocess.preprocess_images` followed by
    :func:`~findvl.encoders.hf_vision.resample_to_patch_grid`, batched over images of one size,
    with each image padded alone to the square ``norm.longest_side``.
    """
    side = norm.longest_side
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    out: list[torch.Tensor | None] = [None] * len(images)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
    for (h, w), members in by_size.items():
        x = (torch.stack([images[i] for i in members]).float() - mean) / std
        scale = side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size != (h, w):  # normalising first is the same (linear), on fewer pixels
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = F.pad(x, (0, side - size[1], 0, side - size[0]))  # zero = the mean colour
        for i, row in zip(members, resample_to_patch_grid(x, patch, grid_stride)):
            out[i] = row
    return torch.stack(out)


def read_captioned(root: str | Path, split: str) -> list[Sample]:
    """The images of a split that have captions, with their panoptic segments (nothing else)."""
    standard = DatasetPaths.standard(root, split)
    paths = DatasetPaths(
        image_dir=standard.image_dir,
        panoptic_json=standard.panoptic_json,
        panoptic_dir=standard.panoptic_dir,
        captions_json=standard.captions_json,
    )
    samples = [s for s in load_dataset(root, split, paths) if s.captions]
    if not samples:
        raise ValueError(f"{root}: split {split!r} has no image with a caption")
    return samples


def tokenize_captions(
    tokenizer,
    captions: list[str],
    *,
    negatives: list[tuple[str | None, ...]] | None = None,
    max_length: int = 77,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``M`` captions -> ids ``[M,L]``, mask ``[M,L]`` and their ``R`` negatives' ``[M,R,L]`` each.

    ``negatives`` holds ``R`` negatives per caption
    (:func:`~findvl.pretrain.negatives.caption_negatives`), None for one that could not be
    made: its mask row is all False. The negatives share the captions' padded length. Without
    ``negatives`` both are None.
    """
    texts = list(captions)
    m = len(captions)
    if negatives is not None:
        r = len(negatives[0]) if negatives else 0
        texts += [n or "" for row in negatives for n in row]
        made = torch.tensor([n is not None for row in negatives for n in row], dtype=torch.bool)
    tokens = tokenizer(
        texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
    )
    ids, mask = tokens["input_ids"], tokens["attention_mask"].bool()
    if negatives is None:
        return ids, mask, None, None
    negative_mask = (mask[m:] & made[:, None]).reshape(m, r, -1)
    return ids[:m], mask[:m], ids[m:].reshape(m, r, -1), negative_mask


def to_pretrain_data(
    samples: list[Sample],
    *,
    tokenizer,
    norm: ImageNorm,
    patch_size: int,
    grid_stride: int,
    classes: ClassTable,
    max_length: int = 77,
    chunk: int = 64,
    negatives: NegativeVocabulary | None = None,
    negative_kinds: tuple[str, ...] = REPLACEMENT_KINDS,
    negative_seed: int = 0,
    palette: tuple[tuple[int, int, int], ...] | None = None,
) -> PretrainData:
    """Images, per-patch labels and tokenised captions of ``samples`` in memory.

    Args:
        samples: images with captions (:func:`read_captioned`).
        tokenizer: the fast CLIP tokenizer.
        norm: mean/std of the exported preprocessor and ``longest_side`` =
            :func:`adapter_longest_side` (``image_size * grid_stride / patch_size``).
        patch_size: the ViT's patch size.
        grid_stride: input pixels per patch (the adapter's ``grid_stride``).
        classes: the dense classes (the training split's, for every split).
        max_length: longest caption in tokens (BOS and EOS included).
        chunk: images preprocessed at once.
        negatives: the words swapped to make the hard negatives of each caption (None: no
            negatives).
        negative_kinds: which negatives (:func:`~findvl.pretrain.negatives.caption_negatives`).
        negative_seed: seed of the replacements.
        palette: RGB colours whose per-patch pixel counts among the thing pixels become
            ``patch_colours`` (each thing pixel counts for its nearest colour); None: none.
    """
    class_of = classes.class_of()
    image_size = norm.longest_side * patch_size // grid_stride
    isthing = torch.tensor(classes.isthing)
    colours = None if palette is None else torch.tensor(palette)
    pixels, counts, colour_counts = [], [], []
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        images = [_read_rgb(s.image_path) for s in part]
        pixels.append(adapter_pixels(images, norm=norm, patch=patch_size, grid_stride=grid_stride))
        for sample, image in zip(part, images):
            class_map = _class_map(sample, class_of)
            counts.append(
                patch_class_counts(
                    class_map, side=image_size, patch=patch_size, num_classes=len(classes.names)
                )
            )
            if colours is not None:
                colour_counts.append(
                    patch_class_counts(
                        colour_map(image, class_map, isthing, colours),
                        side=image_size,
                        patch=patch_size,
                        num_classes=len(colours) + 1,
                    )  # fmt: skip
                )
    captions = [c for s in samples for c in s.captions]
    owner = [i for i, s in enumerate(samples) for _ in s.captions]
    rows = None
    if negatives is not None:
        rows = caption_negatives(captions, negatives, negative_kinds, seed=negative_seed)
    ids, mask, negative_ids, negative_mask = tokenize_captions(
        tokenizer, captions, negatives=rows, max_length=max_length
    )
    return PretrainData(
        pixels=torch.cat(pixels),
        patch_counts=torch.stack(counts),
        caption_ids=ids,
        caption_mask=mask,
        caption_image=torch.tensor(owner, dtype=torch.long),
        classes=classes,
        image_ids=[s.image_id for s in samples],
        negative_ids=negative_ids,
        negative_mask=negative_mask,
        negative_kinds=tuple(negative_kinds) if negatives is not None else (),
        patch_colours=torch.stack(colour_counts) if colours is not None else None,
    )
