"""A report section: interleaved searches over a split's images through an in-memory index.

:func:`search_section` embeds every image of the given samples into a :class:`FindIndex`,
turns the first entity captions that have a visual reference into queries (that entity
becomes its reference region, the others stay text), searches the top ``k`` and draws one
picture per query: the reference crop, then the ranked images with their scores, the
caption's own image framed green (others grey). It returns the section's markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from findvl.index.embed import embed_images, embed_query
from findvl.index.find_index import FindIndex, SearchHit
from findvl.index.manifest import ModelFingerprint
from findvl.model.requests import InterleavedText

TILE = 128
RIGHT, WRONG = (40, 170, 60), (190, 190, 190)


@dataclass
class SearchExample:
    """One drawn search: the query ``text`` (visual entity in brackets), the caption's image
    ``target``, the ranked ``hits``, the target's ``rank`` (None: not in the top k), the
    ``picture`` path."""

    text: str
    target: str
    hits: list[SearchHit]
    rank: int | None
    picture: Path


def _crop(image: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box (plus a margin) cut from ``image [3,H,W]`` -> ``[h,w,3]``."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    m = 4
    y0, y1 = max(0, ys.min() - m), min(h, ys.max() + 1 + m)
    x0, x1 = max(0, xs.min() - m), min(w, xs.max() + 1 + m)
    return image.permute(1, 2, 0)[y0:y1, x0:x1].numpy()


def _tile(array: np.ndarray, title: str, color=None) -> Image.Image:
    from findvl import viz

    image = viz.fit(Image.fromarray(np.ascontiguousarray(array)), TILE)
    if color is not None:
        image = viz.frame(image, color)
    return viz.titled(image, title, size=12)


def build_split_index(model, samples: Sequence, *, batch_size: int = 8) -> FindIndex:
    """An in-memory index over the images of ``samples`` (ids: image ids as strings)."""
    from findvl.evaluation.common import load_image

    index = FindIndex.create(ModelFingerprint.of_model(model), model=model)
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images, objects = embed_images(model, [load_image(s) for s in batch])
        index.add_embeddings([str(s.image_id) for s in batch], images, objects)
    index.sync()
    return index


@torch.no_grad()
def search_examples(
    model, samples: Sequence, out_dir: str | Path, *, queries: int = 3, k: int = 5, seed: int = 0
) -> list[SearchExample]:
    """Run and draw up to ``queries`` searches over ``samples`` (pictures in ``out_dir``)."""
    from findvl import viz
    from findvl.evaluation.common import SegmentMasks, load_image, visual_query

    out_dir = Path(out_dir)
    by_id = {s.image_id: s for s in samples}
    index = build_split_index(model, list(samples))
    segments, examples = SegmentMasks(), []
    for sample in samples:
        for caption in sample.entities:
            if len(examples) == queries:
                return examples
            found = visual_query(caption, by_id, segments)
            if found is None:
                continue
            text, crop = found.text, _crop(found.image, found.mask)
            query = embed_query(model, text, seed=seed)
            query.reference_ids = [str(found.image_id)]
            hits = index.search_embedding(query, k)
            target = str(sample.image_id)
            rank = next((r for r, h in enumerate(hits, 1) if h.image == target), None)
            tiles = [_tile(crop, "reference")]
            for r, hit in enumerate(hits, 1):
                picture = load_image(by_id[int(hit.image)]).permute(1, 2, 0).numpy()
                color = RIGHT if hit.image == target else WRONG
                tiles.append(_tile(picture, f"#{r} {hit.score:.3f}", color))
            path = viz.save(
                viz.grid(tiles, len(tiles), pad=6), out_dir / f"search_{len(examples)}.png"
            )
            shown = _shown_text(text)
            examples.append(SearchExample(shown, target, hits, rank, path))
    return examples


def _shown_text(text: InterleavedText) -> str:
    out, last = [], 0
    for e in text.entities:
        out.append(text.text[last : e.start])
        phrase = text.text[e.start : e.end]
        out.append(f"[image: {phrase}]" if e.reference is not None else phrase)
        last = e.end
    return "".join([*out, text.text[last:]])


def search_section(
    model,
    samples: Sequence,
    out_dir: str | Path,
    *,
    link_root: str | Path | None = None,
    heading: str = "## Interleaved search",
    queries: int = 3,
    k: int = 5,
    seed: int = 0,
) -> str:
    """Markdown of the report's search section (pictures ``search_N.png`` into ``out_dir``).

    Args:
        model: the trained model (eval mode).
        samples: the split's samples (e.g. ``load_dataset(root, "val")``): the collection.
        out_dir: where the pictures go.
        link_root: the markdown links pictures relative to this folder (default ``out_dir``;
            the report's own folder when the pictures go to a subfolder).
        heading: the section's heading line.
        queries: searches shown; k: images ranked per search.
    """
    examples = search_examples(model, samples, out_dir, queries=queries, k=k, seed=seed)
    base = Path(link_root if link_root is not None else out_dir)
    lines = [
        heading,
        "",
        f"Queries over the {len(samples)} images through `FindIndex` (first stage + rerank with "
        "the entity-object term). The first picture is the query's visual reference; the "
        f"caption's own image is framed green when it is in the top {k}.",
        "",
    ]
    if not examples:
        return "\n".join([*lines, "No entity caption with a visual reference in this split.", ""])
    for ex in examples:
        where = f"rank {ex.rank}" if ex.rank is not None else f"not in the top {k}"
        lines += [
            f"**{ex.text}** — right image: {where}",
            "",
            f"![search]({ex.picture.relative_to(base).as_posix()})",
            "",
        ]
    found = sum(ex.rank is not None for ex in examples)
    lines.append(f"Right image in the top {k}: {found} of {len(examples)} queries.")
    return "\n".join([*lines, ""])
