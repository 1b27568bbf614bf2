"""FIND-Bench entity captions: ``entity_{split}.json`` (and ``_long``) with optional references.

Format (one file)::

    images[]:       {id, file_name, height, width}
    annotations[]:  {id, image_id, sentence, sentence_raw, phrase[]}
    phrase[]:       {annotation_id, phrase, start_idx, end_idx, _start_idx, reference?}
    reference:      {image_id, annotation_id, prob}

``annotation_id`` is a panoptic segment id of the caption's image. ``start_idx``/``end_idx`` are
character offsets of the phrase in ``sentence`` (end exclusive); ``_start_idx`` is the offset of
the phrase's ``[id]<phrase>`` markup in ``sentence_raw``. ``reference`` names the most similar
same-category segment of another image (``prob``: cosine similarity of their embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from findvl.jsonio import atomic_write_json, get_field, get_int, get_list, load_json


@dataclass(frozen=True)
class Reference:
    """A visual reference: segment ``annotation_id`` of image ``image_id``; ``prob`` its score."""

    image_id: int
    annotation_id: int
    prob: float


@dataclass(frozen=True)
class EntityPhrase:
    """One entity of a caption.

    Attributes:
        segment_id: panoptic segment id in the caption's image.
        phrase: the surface text, equal to ``sentence[start:end]``.
        start: character offset in ``sentence``.
        end: end offset in ``sentence`` (exclusive).
        raw_start: offset of the markup in ``sentence_raw`` (None when the file has none).
        reference: the visual reference, if the file has one.
    """

    segment_id: int
    phrase: str
    start: int
    end: int
    raw_start: int | None = None
    reference: Reference | None = None


@dataclass(frozen=True)
class EntityCaption:
    """One entity-grounded caption of an image (``id`` is None when the file has none)."""

    id: int | None
    image_id: int
    sentence: str
    sentence_raw: str
    spans: tuple[EntityPhrase, ...]


@dataclass(frozen=True)
class EntityImage:
    id: int
    file_name: str
    height: int | None = None
    width: int | None = None


@dataclass
class EntityFile:
    """The content of one entity JSON file."""

    images: list[EntityImage]
    captions: list[EntityCaption]

    def with_spans(self, spans: list[tuple[EntityPhrase, ...]]) -> EntityFile:
        """A copy whose captions get new spans (one tuple per caption, same order)."""
        captions = [replace(c, spans=s) for c, s in zip(self.captions, spans, strict=True)]
        return EntityFile(images=list(self.images), captions=captions)


def _read_reference(record: dict, where: str) -> Reference | None:
    if record.get("reference") is None:
        return None
    ref = get_field(record, "reference", dict, where)
    where = f"{where}.reference"
    return Reference(
        get_int(ref, "image_id", where),
        get_int(ref, "annotation_id", where),
        float(get_field(ref, "prob", float, where)),
    )


def _read_phrase(record: dict, sentence: str, where: str) -> EntityPhrase:
    phrase = get_field(record, "phrase", str, where)
    start, end = get_int(record, "start_idx", where), get_int(record, "end_idx", where)
    if not 0 <= start < end <= len(sentence):
        raise ValueError(
            f"{where}: offsets [{start}, {end}) outside the sentence (length {len(sentence)})"
        )
    if sentence[start:end] != phrase:
        raise ValueError(
            f"{where}: phrase {phrase!r} differs from sentence[{start}:{end}] = "
            f"{sentence[start:end]!r}"
        )
    raw_start = get_int(record, "_start_idx", where) if "_start_idx" in record else None
    return EntityPhrase(
        get_int(record, "annotation_id", where),
        phrase,
        start,
        end,
        raw_start,
        _read_reference(record, where),
    )


def _read_caption(record: dict, where: str) -> EntityCaption:
    sentence = get_field(record, "sentence", str, where)
    if not sentence.strip():
        raise ValueError(f"{where}.sentence: empty text")
    spans = tuple(
        _read_phrase(p, sentence, f"{where}.phrase[{j}]")
        for j, p in enumerate(get_list(record, "phrase", where))
    )
    return EntityCaption(
        get_int(record, "id", where) if "id" in record else None,
        get_int(record, "image_id", where),
        sentence,
        get_field(record, "sentence_raw", str, where),
        spans,
    )


def read_entity(path: str | Path) -> EntityFile:
    """Read and check an entity JSON file (FIND-Bench or synthetic).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: malformed content, naming the file, the record index and the field.
    """
    data = load_json(path)
    images = []
    for i, record in enumerate(get_list(data, "images", f"{path}")):
        where = f"{path}: images[{i}]"
        height = get_int(record, "height", where) if "height" in record else None
        width = get_int(record, "width", where) if "width" in record else None
        images.append(
            EntityImage(
                get_int(record, "id", where),
                get_field(record, "file_name", str, where),
                height,
                width,
            )
        )
    captions = [
        _read_caption(record, f"{path}: annotations[{i}]")
        for i, record in enumerate(get_list(data, "annotations", f"{path}"))
    ]
    known = {image.id for image in images}
    for i, caption in enumerate(captions):
        if caption.image_id not in known:
            raise ValueError(
                f"{path}: annotations[{i}].image_id: {caption.image_id} is not in images"
            )
    return EntityFile(images=images, captions=captions)


def _phrase_json(span: EntityPhrase) -> dict:
    record = {
        "annotation_id": span.segment_id,
        "phrase": span.phrase,
        "start_idx": span.start,
        "end_idx": span.end,
    }
    if span.raw_start is not None:
        record["_start_idx"] = span.raw_start
    if span.reference is not None:
        ref = span.reference
        record["reference"] = {
            "image_id": ref.image_id,
            "annotation_id": ref.annotation_id,
            "prob": ref.prob,
        }
    return record


def entity_json(entity: EntityFile) -> dict:
    """The JSON object of an entity file (inverse of :func:`read_entity`)."""
    images = [
        {"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width}
        for im in entity.images
    ]
    annotations = [
        {
            "image_id": c.image_id,
            "sentence": c.sentence,
            "sentence_raw": c.sentence_raw,
            "phrase": [_phrase_json(s) for s in c.spans],
            **({} if c.id is None else {"id": c.id}),
        }
        for c in entity.captions
    ]
    return {"images": images, "annotations": annotations}


def write_entity(path: str | Path, entity: EntityFile) -> None:
    """Atomically write an entity file."""
    atomic_write_json(path, entity_json(entity))
