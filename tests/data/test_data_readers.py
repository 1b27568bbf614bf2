"""Readers: masks in every COCO encoding, entity markup, malformed files, embedders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from findvl.data.engine.reference_vision import tiny_vision_embedder
from findvl.data.engine.references import (
    AppearanceEmbedder,
    SegmentTable,
    reference_table,
    write_references,
)
from findvl.data.readers.coco import (
    decode_segmentation,
    read_captions,
    read_instances,
    read_panoptic,
    read_refs,
)
from findvl.data.readers.findbench import (
    EntityCaption,
    EntityFile,
    EntityImage,
    EntityPhrase,
    Reference,
    read_entity,
    write_entity,
)
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.markup import parse_markup
from findvl.panoptic_ids import id2rgb, rgb2id


def test_rgb2id_round_trip() -> None:
    ids = np.array([[0, 1, 255], [256, 65536 + 7, 8_000_123]])
    assert (rgb2id(id2rgb(ids)) == ids).all()
    assert rgb2id(np.array([[[1, 2, 3]]], dtype=np.uint8))[0, 0] == 1 + 2 * 256 + 3 * 65536


def test_decode_polygon_and_rles() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True
    compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    as_json = {"size": compressed["size"], "counts": compressed["counts"].decode()}
    assert (decode_segmentation(as_json, 10, 12, "x") == mask).all()
    # uncompressed RLE: run lengths in column-major order, starting with zeros
    flat = mask.T.ravel()
    changes = np.flatnonzero(np.diff(flat.astype(int))) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    assert (decode_segmentation({"size": [10, 12], "counts": counts}, 10, 12, "x") == mask).all()
    polygon = [[3.0, 2.0, 9.0, 2.0, 9.0, 6.0, 3.0, 6.0]]
    decoded = decode_segmentation(polygon, 10, 12, "x")
    assert decoded[3:5, 4:8].all() and not decoded[7:].any() and not decoded[:, :2].any()
    with pytest.raises(ValueError, match=r"ann\[2\]\.segmentation"):
        decode_segmentation({"counts": 5}, 10, 12, "ann[2]")


def _entity_record() -> dict:
    raw = "[17]<A red circle> is left of [18]<the grass>."
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
        "annotations": [
            {
                "id": 4,
                "image_id": 1,
                "sentence": "A red circle is left of the grass.",
                "sentence_raw": raw,
                "phrase": [
                    {
                        "annotation_id": 17,
                        "phrase": "A red circle",
                        "start_idx": 0,
                        "end_idx": 12,
                        "_start_idx": 0,
                    },
                    {
                        "annotation_id": "18",
                        "phrase": "the grass",
                        "start_idx": 24,
                        "end_idx": 33,
                        "_start_idx": 30,
                        "reference": {"image_id": 2, "annotation_id": 33, "prob": 0.9},
                    },
                ],
            }
        ],
    }


def test_parse_markup_of_an_entity_record() -> None:
    parsed = parse_markup(_entity_record()["annotations"][0]["sentence_raw"])
    assert parsed.text == "A red circle is left of the grass."
    assert [(s.entity_id, s.start, s.end, s.raw_start) for s in parsed.spans] == [
        (17, 0, 12, 0),
        (18, 24, 33, 30),
    ]


def test_entity_read_write_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "entity_val.json"
    path.write_text(json.dumps(_entity_record()))
    entity = read_entity(path)
    caption = entity.captions[0]
    parsed = parse_markup(caption.sentence_raw)
    assert caption.spans == tuple(
        EntityPhrase(
            s.entity_id,
            parsed.text[s.start : s.end],
            s.start,
            s.end,
            s.raw_start,
            caption.spans[i].reference,
        )
        for i, s in enumerate(parsed.spans)
    )
    assert caption.spans[1].segment_id == 18  # string ids are cast
    assert caption.spans[1].reference == Reference(2, 33, 0.9)
    assert caption.spans[0].reference is None
    write_entity(tmp_path / "copy.json", entity)
    assert read_entity(tmp_path / "copy.json") == entity


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["annotations"][0]["phrase"][1].pop("start_idx"),
            r"entity_val.json: annotations\[0\].phrase\[1\]: missing field 'start_idx'",
        ),
        (
            lambda d: d["annotations"][0]["phrase"][0].update(phrase="A blue circle"),
            r"annotations\[0\].phrase\[0\]: phrase 'A blue circle' differs",
        ),
        (
            lambda d: d["annotations"][0]["phrase"][0].update(end_idx=99),
            r"annotations\[0\].phrase\[0\]: offsets \[0, 99\)",
        ),
        (
            lambda d: d["annotations"][0].update(image_id="x"),
            r"annotations\[0\].image_id: expected an integer, got 'x'",
        ),
        (
            lambda d: d["annotations"][0].update(sentence="  "),
            r"annotations\[0\].sentence: empty text",
        ),
        (
            lambda d: d["annotations"][0].update(image_id=5),
            r"annotations\[0\].image_id: 5 is not in images",
        ),
        (lambda d: d["images"][0].pop("file_name"), r"images\[0\]: missing field 'file_name'"),
        (
            lambda d: d["annotations"][0]["phrase"][1]["reference"].pop("prob"),
            r"phrase\[1\].reference: missing field 'prob'",
        ),
    ],
)
def test_malformed_entity_names_file_index_field(tmp_path: Path, edit, message: str) -> None:
    data = _entity_record()
    edit(data)
    path = tmp_path / "entity_val.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_entity(path)


def test_missing_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_entity(tmp_path / "nothing.json")
    bad = tmp_path / "refs.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="refs.json: not valid JSON"):
        read_refs(bad)


def test_malformed_coco_files(tmp_path: Path) -> None:
    refs = tmp_path / "refs.json"
    refs.write_text(
        json.dumps(
            [
                {
                    "ref_id": 1,
                    "image_id": 1,
                    "ann_id": 2,
                    "category_id": 1,
                    "sentences": [{"sent": "x", "sent_id": 0}, {"sent_id": 1}],
                }
            ]
        )
    )
    with pytest.raises(ValueError, match=r"refs.json: \[0\].sentences\[1\]: missing field 'sent'"):
        read_refs(refs)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"annotations": [{"id": 1, "image_id": 1, "caption": 3}]}))
    with pytest.raises(ValueError, match=r"annotations\[0\].caption: expected a string, got 3"):
        read_captions(captions)
    instances = tmp_path / "instances.json"
    instances.write_text(
        json.dumps(
            {
                "images": [],
                "categories": [],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": [0, 0, 1],
                        "area": 1,
                        "segmentation": [],
                    }
                ],
            }
        )
    )
    with pytest.raises(ValueError, match=r"annotations\[0\].bbox: expected \[x, y, w, h\]"):
        read_instances(instances)
    panoptic = tmp_path / "panoptic.json"
    panoptic.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "height": 2, "width": 2}],
                "categories": [{"id": 1, "name": "a", "isthing": 1}],
                "annotations": [
                    {
                        "image_id": 1,
                        "file_name": "a.png",
                        "segments_info": [
                            {"id": 5, "category_id": 9, "bbox": [0, 0, 1, 1], "area": 1}
                        ],
                    }
                ],
            }
        )
    )
    with pytest.raises(ValueError, match=r"segments_info\[0\].category_id: 9 is not in categories"):
        read_panoptic(panoptic, tmp_path, tmp_path)


def test_refs_accept_dict_form(tmp_path: Path) -> None:
    path = tmp_path / "refs.json"
    record = {
        "ref_id": 1,
        "image_id": 3,
        "ann_id": 2,
        "category_id": 1,
        "split": "val",
        "sentences": [{"sent": "the dog", "tokens": ["the", "dog"], "sent_id": 7}],
    }
    path.write_text(json.dumps({"refs": [record]}))
    (ref,) = read_refs(path)
    assert ref.ann_id == 2 and ref.sentences[0].tokens == ("the", "dog")


def test_nearest_reference_hand_case() -> None:
    table = SegmentTable(
        image_ids=np.array([1, 1, 2, 3, 3]),
        segment_ids=np.array([10, 11, 20, 30, 31]),
        category_ids=np.array([5, 5, 5, 5, 6]),
        embeddings=np.array([[1, 0], [1, 0], [0.6, 0.8], [0, 1], [1, 0]], dtype=np.float32),
    )
    ref = table.nearest(1, 10)  # segment 11 is more similar but in the same image
    assert (ref.image_id, ref.annotation_id) == (2, 20)
    assert ref.prob == pytest.approx(0.6)
    assert table.nearest(3, 31) is None  # no other segment of category 6
    with pytest.raises(ValueError, match="segment 99 is not a segment of image 1"):
        table.nearest(1, 99)


def test_embedders_shapes_and_determinism() -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    masks = np.zeros((3, 40, 56), dtype=bool)
    masks[0, :20] = True
    masks[1, 20:, 30:] = True
    masks[2, 5, 5] = True  # a single pixel still gets an embedding
    for embedder in (AppearanceEmbedder(), tiny_vision_embedder(0)):
        out = embedder(image, masks)
        assert out.shape[0] == 3 and out.dtype == np.float32 and np.isfinite(out).all()
        assert np.array_equal(out, embedder(image, masks))
    assert np.array_equal(
        tiny_vision_embedder(0)(image, masks), tiny_vision_embedder(0)(image, masks)
    )
    assert not np.array_equal(
        tiny_vision_embedder(0)(image, masks), tiny_vision_embedder(1)(image, masks)
    )
    colour = AppearanceEmbedder()(image, masks)[:, :3]
    assert np.allclose(colour[0], image[:20].reshape(-1, 3).mean(0) / 255, atol=1e-5)
    assert np.allclose(colour[2], image[5, 5] / 255, atol=1e-6)


def test_write_references_with_vision_embedder(tmp_path: Path) -> None:
    write_synth(SynthConfig(tmp_path, 6, seed=2, size=64, split="val"), progress=False)
    table = reference_table(tmp_path, "val", tiny_vision_embedder(0), progress=False)
    out = tmp_path / "refs_tiny.json"
    result = write_references(tmp_path, "val", tiny_vision_embedder(0), out=out, table=table)
    assert read_entity(out) == result
    category = dict(
        zip(zip(table.image_ids.tolist(), table.segment_ids.tolist()), table.category_ids.tolist())
    )
    for caption in result.captions:
        for span in caption.spans:
            if span.reference is None:
                continue
            assert span.reference.image_id != caption.image_id
            assert (
                category[(span.reference.image_id, span.reference.annotation_id)]
                == category[(caption.image_id, span.segment_id)]
            )


def test_entity_file_with_spans_keeps_order() -> None:
    caption = EntityCaption(1, 1, "a b", "[3]<a> b", (EntityPhrase(3, "a", 0, 1, 0),))
    entity = EntityFile([EntityImage(1, "x.png")], [caption])
    new = entity.with_spans([(EntityPhrase(3, "a", 0, 1, 0, Reference(2, 4, 0.5)),)])
    assert new.captions[0].spans[0].reference == Reference(2, 4, 0.5)
    assert entity.captions[0].spans[0].reference is None
    with pytest.raises(ValueError):
        entity.with_spans([])
