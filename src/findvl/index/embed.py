"""The model side of an index: gallery embeddings of images and query embeddings of texts.

Image-side embeddings (the pooled image query ``[P]`` and the object proposals ``[N,P]``) do
not depend on any query, and query-side embeddings (the interleave legend ``[P]`` and the
entity queries ``[E,P]``) do not depend on the image of the forward they are computed in: a
collection is embedded once and a query costs one forward on a blank canvas.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from findvl.images import read_image_tensor
from findvl.index.scoring import QueryEmbedding
from findvl.model.requests import (
    ImageTextRetrieval,
    InterleavedText,
    InterleaveRetrieval,
    InterleaveSegmentation,
    VisualPrompt,
    VisualReference,
)
from findvl.model.sampler import rasterize

#: Extensions embedded by ``index build`` (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Caption of the image-embedding forward (the image query never attends it).
IMAGE_CAPTION = "an image"


def list_images(root: str | Path) -> list[str]:
    """Image files under ``root`` (recursive), as sorted POSIX paths relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--images: no directory at {root}")
    found = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
    ]
    return sorted(found)


@torch.no_grad()
def embed_images(model, images: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """``B`` RGB images -> image embeddings ``[B,P]`` and object embeddings ``[B,N,P]``."""
    out = model(images, [ImageTextRetrieval([IMAGE_CAPTION] * len(images))])
    result = out.image_text_retrieval
    return (
        result.final.image.float().cpu().numpy(),
        result.scored_objects().float().cpu().numpy(),
    )


def _blank_canvas() -> torch.Tensor:
    return torch.full((3, 32, 32), 127, dtype=torch.uint8)


@torch.no_grad()
def embed_query(model, query: InterleavedText | str, *, seed: int = 0) -> QueryEmbedding:
    """One query -> legend ``[P]`` and entity embeddings ``[E,P]`` (one forward).

    ``query``: an :class:`InterleavedText` or FIND-Bench markup without visual references.
    The official interleave score's entity embeddings are the interleaved segmentation
    queries; the legend is the interleaved retrieval query. ``seed`` fixes the points drawn
    from visual references.
    """
    text = InterleavedText.from_markup(query) if isinstance(query, str) else query
    requests: list = [InterleaveRetrieval([text])]
    if text.entities:
        requests.insert(0, InterleaveSegmentation([text]))
    generator = torch.Generator().manual_seed(seed)
    out = model([_blank_canvas()], requests, generator=generator)
    legend = out.interleave_retrieval.final.query[0].float().cpu().numpy()
    entities = np.zeros((0, legend.shape[0]), np.float32)
    if text.entities:
        queries = out.interleave_segmentation.queries[0, : len(text.entities)]
        entities = queries.float().cpu().numpy()
    return QueryEmbedding(legend, entities, text.text)


def parse_ref(spec: str) -> tuple[int, VisualReference, Path]:
    """``ID=IMAGE[:MASK_PNG|:x0,y0,x1,y1]`` -> (entity id, reference, image path).

    Without a region the whole image is the reference. A mask PNG must have the image's size;
    its non-zero pixels are the region. Errors name the spec.
    """
    where = f"--ref {spec!r}"
    ident, eq, rest = spec.partition("=")
    if not eq or not ident.strip().isdigit() or not rest:
        raise ValueError(f"{where}: expected ID=IMAGE[:MASK_PNG|:x0,y0,x1,y1]")
    image_part, region = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and head and (tail.lower().endswith(".png") or tail.count(",") == 3):
        image_part, region = head, tail
    image_path = Path(image_part)
    if not image_path.is_file():
        raise FileNotFoundError(f"{where}: no image file at {image_path}")
    image = read_image_tensor(image_path)
    size = (int(image.shape[1]), int(image.shape[2]))
    if region is None:
        positive = torch.ones(size, dtype=torch.bool)
    elif region.count(",") == 3 and not region.lower().endswith(".png"):
        try:
            box = tuple(float(v) for v in region.split(","))
        except ValueError:
            raise ValueError(f"{where}: box {region!r} is not four numbers x0,y0,x1,y1") from None
        positive = rasterize(size, box=box, field=where)
    else:
        mask_path = Path(region)
        if not mask_path.is_file():
            raise FileNotFoundError(f"{where}: no mask file at {mask_path}")
        mask = read_image_tensor(mask_path).amax(0) > 0
        if tuple(mask.shape) != size:
            raise ValueError(f"{where}: mask {tuple(mask.shape)} differs from the image {size}")
        if not mask.any():
            raise ValueError(f"{where}: the mask {mask_path} is empty")
        positive = mask
    return int(ident), VisualReference(image, VisualPrompt(positive)), image_path


def query_from_markup(text: str, refs: Mapping[int, VisualReference] | None) -> InterleavedText:
    """Markup ``text`` with its visual references (``ValueError`` naming a bad markup or id)."""
    try:
        return InterleavedText.from_markup(text, refs)
    except ValueError as error:
        raise ValueError(f"--query {text!r}: {error}") from None
