"""Write the synthetic FIND-Bench world: images and COCO / RefCOCO / FIND-Bench annotations.

Layout under ``out``::

    images/{split}/{image_id:012d}.png
    panoptic_{split}/{image_id:012d}.png
    annotations/{instances,panoptic,captions,refs,entity}_{split}.json, entity_{split}_long.json

Ids: image ids start at 1 (train) or 500001 (val); segment id ``k`` (1-based, things first in
drawing order, then stuff) of image ``i`` is ``16 * i + k`` — it is the instance annotation id
and the panoptic segment id. Every pixel belongs to a segment (no VOID).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from findvl.data.engine.references import (
    AppearanceEmbedder,
    SegmentTable,
    SegmentTableBuilder,
    add_references,
)
from findvl.data.readers.findbench import (
    EntityCaption,
    EntityFile,
    EntityImage,
    EntityPhrase,
    write_entity,
)
from findvl.data.synth.png import encode_png
from findvl.data.synth.shapes import Scene, sample_scene
from findvl.data.synth.text import (
    MarkedText,
    TextObject,
    captions,
    entity_caption,
    entity_paragraph,
    referring_expression,
)
from findvl.data.synth.world import CATEGORY_BY_ID, HOLDOUT_COMBOS, synth_categories_json
from findvl.jsonio import atomic_write_json
from findvl.panoptic_ids import id2rgb

SPLITS = {"train": (0, 1), "val": (500_000, 2)}  # split -> (image id offset, rng stream)
SEGMENTS_PER_IMAGE = 16  # segment id = 16 * image_id + k, k in 1..15


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise.

    Attributes:
        out: output root.
        images: number of images.
        seed: the seed; the same config gives byte-identical files.
        size: image side in pixels.
        split: "train" or "val".
        holdout_combos: keep ``HOLDOUT_COMBOS`` out of train and put one in every val image.
    """

    out: Path
    images: int
    seed: int
    size: int = 128
    split: str = "train"
    holdout_combos: bool = False


@dataclass
class _Records:
    """JSON records gathered over all images."""

    images: list[dict] = field(default_factory=list)
    instances: list[dict] = field(default_factory=list)
    panoptic: list[dict] = field(default_factory=list)
    captions: list[dict] = field(default_factory=list)
    refs: list[dict] = field(default_factory=list)
    entity: list[EntityCaption] = field(default_factory=list)
    entity_long: list[EntityCaption] = field(default_factory=list)


def _entity(caption_id: int, image_id: int, text: MarkedText) -> EntityCaption:
    spans = tuple(EntityPhrase(*p) for p in text.phrases)
    return EntityCaption(caption_id, image_id, text.sentence, text.sentence_raw, spans)


@dataclass(frozen=True)
class _Geometry:
    """Per segment ``k = 1..K`` of a label map, ``[K]`` arrays: pixel count, tight box
    ``[left, right) x [top, bottom)`` and centroid in pixels."""

    area: np.ndarray
    left: np.ndarray
    top: np.ndarray
    right: np.ndarray
    bottom: np.ndarray
    centre_y: np.ndarray
    centre_x: np.ndarray


def _geometry(labels: np.ndarray, count: int) -> _Geometry:
    """:class:`_Geometry` of the segments ``1..count`` of a uint8 label map, from one per-row
    and one per-column histogram of the labels."""
    height, width = labels.shape
    stride = count + 1
    rows = np.arange(height)[:, None] * stride + labels  # HxW keys row * stride + label
    cols = np.arange(width)[None, :] * stride + labels
    per_row = np.bincount(rows.ravel(), minlength=stride * height).reshape(height, stride)
    per_col = np.bincount(cols.ravel(), minlength=stride * width).reshape(width, stride)
    # KxH and KxW float64 counts (exact), contiguous for the reductions below
    per_row = np.ascontiguousarray(per_row[:, 1:].T, dtype=np.float64)
    per_col = np.ascontiguousarray(per_col[:, 1:].T, dtype=np.float64)
    area = per_row.sum(1)
    in_row, in_col = per_row > 0, per_col > 0
    return _Geometry(
        area=area.astype(np.int64),
        left=in_col.argmax(1),
        top=in_row.argmax(1),
        right=width - in_col[:, ::-1].argmax(1),
        bottom=height - in_row[:, ::-1].argmax(1),
        centre_y=per_row @ np.arange(height, dtype=np.float64) / area,
        centre_x=per_col @ np.arange(width, dtype=np.float64) / area,
    )


def _segment_records(
    scene: Scene, image_id: int, rec: _Records
) -> tuple[list[TextObject], np.ndarray]:
    """Add the instance and panoptic records of one scene.

    Areas, boxes and centroids come from two histograms of the label map, and the RLE masks
    of all things from one pycocotools call.

    Returns:
        what the text generator needs per segment, and the ``[H,W,3]`` uint8 panoptic PNG.
    """
    height, width = scene.labels.shape
    g = _geometry(scene.labels, len(scene.segments))
    things = sum(s.isthing for s in scene.segments)  # they come first
    # [N,W,H] C-order masks of the transposed map are the [H,W,N] Fortran order RLE wants.
    ks = np.arange(1, things + 1, dtype=np.uint8)
    masks_t = np.equal(scene.labels.T[None], ks[:, None, None], order="C")
    rles = mask_utils.encode(masks_t.view(np.uint8).transpose(2, 1, 0))

    segments_info, objects = [], []
    for k, segment in enumerate(scene.segments):
        segment_id = SEGMENTS_PER_IMAGE * image_id + k + 1
        bbox = [
            int(g.left[k]),
            int(g.top[k]),
            int(g.right[k] - g.left[k]),
            int(g.bottom[k] - g.top[k]),
        ]
        info = {
            "id": segment_id,
            "category_id": segment.category_id,
            "area": int(g.area[k]),
            "bbox": bbox,
            "iscrowd": 0,
        }
        segments_info.append(info)
        spec = segment.spec
        centre = (float(g.centre_y[k]) / height, float(g.centre_x[k]) / width)
        name = CATEGORY_BY_ID[segment.category_id].name
        objects.append(
            TextObject(
                segment_id, name, segment.isthing, spec and spec.colour, spec and spec.size, centre
            )
        )
        if segment.isthing:
            rle = rles[k]
            rec.instances.append(
                {
                    **info,
                    "image_id": image_id,
                    "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
                    "attributes": {"colour": spec.colour, "size": spec.size},
                }
            )
    file_name = f"{image_id:012d}.png"
    rec.panoptic.append(
        {"image_id": image_id, "file_name": file_name, "segments_info": segments_info}
    )
    ids = np.array([0] + [info["id"] for info in segments_info], dtype=np.int64)
    return objects, np.take(id2rgb(ids), scene.labels, axis=0)  # HxW -> HxWx3


def _text_records(
    objects: list[TextObject], image_id: int, split: str, rng: np.random.Generator, rec: _Records
) -> None:
    for j, text in enumerate(captions(objects, rng)):
        rec.captions.append({"id": 8 * image_id + j, "image_id": image_id, "caption": text})
    things = [o for o in objects if o.isthing]
    for obj in things:
        expression = referring_expression(obj, things, rng)
        if expression is None:
            continue
        variants = list(dict.fromkeys([expression, expression.replace("the ", "")]))
        category_id = next(c.id for c in CATEGORY_BY_ID.values() if c.name == obj.category)
        rec.refs.append(
            {
                "ref_id": obj.segment_id,
                "image_id": image_id,
                "ann_id": obj.segment_id,
                "category_id": category_id,
                "split": split,
                "sentences": [
                    {"sent": s, "tokens": s.split(), "sent_id": 4 * obj.segment_id + j}
                    for j, s in enumerate(variants)
                ],
            }
        )
    for j in range(1 + int(rng.integers(2))):
        rec.entity.append(_entity(4 * image_id + j, image_id, entity_caption(objects, rng)))
    rec.entity_long.append(_entity(4 * image_id, image_id, entity_paragraph(objects, rng)))


def _image_dirs(config: SynthConfig) -> tuple[Path, Path]:
    """The picture and panoptic PNG directories of the split."""
    return config.out / "images" / config.split, config.out / f"panoptic_{config.split}"


def split_outputs(out: Path, split: str) -> list[Path]:
    """Every path a split writes under ``out``: two PNG directories and seven JSON files."""
    ann = out / "annotations"
    names = ("instances", "panoptic", "captions", "refs", "entity")
    return [
        out / "images" / split,
        out / f"panoptic_{split}",
        *(ann / f"{name}_{split}.json" for name in names),
        ann / f"entity_{split}_long.json",
    ]


def _prepare_output(config: SynthConfig, overwrite: bool) -> None:
    """Refuse to mix with an existing split (or, with ``overwrite``, delete it first), then
    create the empty PNG directories."""
    existing = [
        p
        for p in split_outputs(config.out, config.split)
        if p.is_file() or (p.is_dir() and any(p.iterdir()))
    ]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]}: the {config.split} split already exists in {config.out};"
            " choose another output or pass --overwrite (overwrite=True) to replace it"
        )
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for directory in _image_dirs(config):
        directory.mkdir(parents=True, exist_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist) with ``data``. The directories are fresh, and
    the annotation files, which make a split readable, are written last."""
    with open(path, "xb") as f:
        f.write(data)


def _synth_image(
    config: SynthConfig, index: int, rec: _Records, table: SegmentTableBuilder | None = None
) -> None:
    """Draw image ``index`` of the split, write its PNGs and add its records (and, with a
    ``table``, the embeddings of its segments)."""
    offset, stream = SPLITS[config.split]
    image_id = offset + index + 1
    excluded, required = frozenset(), None
    if config.holdout_combos and config.split == "train":
        excluded = frozenset(HOLDOUT_COMBOS)
    elif config.holdout_combos:
        required = HOLDOUT_COMBOS[index % len(HOLDOUT_COMBOS)]
    rng = np.random.default_rng([config.seed, stream, index])
    scene = sample_scene(rng, size=config.size, excluded_combos=excluded, required_combo=required)
    objects, panoptic_png = _segment_records(scene, image_id, rec)
    _text_records(objects, image_id, config.split, rng, rec)
    if table is not None:
        segments = [(s["id"], s["category_id"]) for s in rec.panoptic[-1]["segments_info"]]
        table.add(image_id, scene.image, scene.masks(), segments)
    file_name = f"{image_id:012d}.png"
    rec.images.append(
        {"id": image_id, "file_name": file_name, "height": config.size, "width": config.size}
    )
    # Noisy pictures are stored uncompressed (they barely compress); panoptic PNGs are flat.
    image_dir, panoptic_dir = _image_dirs(config)
    _write_new(image_dir / file_name, encode_png(scene.image, 0))
    _write_new(panoptic_dir / file_name, encode_png(panoptic_png, 1))


def write_synth(
    config: SynthConfig, *, overwrite: bool = False, progress: bool = True
) -> dict[str, int]:
    """Synthesise ``config.images`` images and write every annotation file.

    On the val split the entity files get visual references (see
    :func:`findvl.data.engine.references.add_references`) from an appearance embedder. Annotation
    files are written last, each atomically, ``panoptic_{split}.json`` the very last: a split
    interrupted half-way lacks it.

    Args:
        overwrite: delete the split's existing files (:func:`split_outputs`) first; without
            it an existing split raises ``FileExistsError`` and is left untouched.

    Returns:
        counts of what was written (images, segments, captions, refs, entity captions).
    """
    if config.split not in SPLITS:
        raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {config.split!r}")
    if config.images < 1 or config.size < 32:
        raise ValueError(f"images={config.images}, size={config.size}: need >= 1 and >= 32")
    _prepare_output(config, overwrite)
    rec = _Records()
    # Val gets visual references, from the images and masks in memory (the same embeddings
    # `findvl data references --embedder appearance` computes from the files).
    table = SegmentTableBuilder(AppearanceEmbedder()) if config.split == "val" else None
    for index in tqdm(range(config.images), desc="synth", disable=not progress):
        _synth_image(config, index, rec, table)
    _write_annotations(config, rec, None if table is None else table.build())
    return {
        "images": len(rec.images),
        "segments": sum(len(p["segments_info"]) for p in rec.panoptic),
        "captions": len(rec.captions),
        "refs": len(rec.refs),
        "entity_captions": len(rec.entity),
    }


def _write_annotations(config: SynthConfig, rec: _Records, table: SegmentTable | None) -> None:
    """Write the JSON files, each atomically; ``panoptic_{split}.json`` comes last, so its
    presence marks a complete split."""
    ann, split = config.out / "annotations", config.split
    categories = synth_categories_json()
    things = [c for c in categories if c["isthing"]]
    atomic_write_json(
        ann / f"instances_{split}.json",
        {"images": rec.images, "annotations": rec.instances, "categories": things},
    )
    atomic_write_json(
        ann / f"captions_{split}.json", {"images": rec.images, "annotations": rec.captions}
    )
    atomic_write_json(ann / f"refs_{split}.json", rec.refs)
    images = [EntityImage(r["id"], r["file_name"], r["height"], r["width"]) for r in rec.images]
    for suffix, entities in (("", rec.entity), ("_long", rec.entity_long)):
        entity = EntityFile(images, entities)
        if table is not None:
            entity = add_references(entity, table)
        write_entity(ann / f"entity_{split}{suffix}.json", entity)
    atomic_write_json(
        ann / f"panoptic_{split}.json",
        {"images": rec.images, "annotations": rec.panoptic, "categories": categories},
    )
