"""Synthetic world: round trip through the readers, text consistency, determinism, holdout."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from findvl.cli import data as data_cli
from findvl.data.engine.references import AppearanceEmbedder, write_references
from findvl.data.readers.coco import read_captions, read_instances, read_panoptic, read_refs
from findvl.data.readers.dataset import DatasetPaths, load_dataset
from findvl.data.readers.findbench import read_entity
from findvl.data.readers.stats import entity_stats
from findvl.data.synth.shapes import ShapeSpec, compose, sample_scene, shape_stamp
from findvl.data.synth.text import RELATIONS, TextObject, holds
from findvl.data.synth.world import (
    HOLDOUT_COMBOS,
    SYNTH_CATEGORIES,
    synth_categories_json,
)
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.markup import parse_markup


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for split, images in (("train", 40), ("val", 25)):
        config = SynthConfig(root, images, seed=3, split=split, holdout_combos=True)
        write_synth(config, progress=False)
    return root


def _panoptic(root: Path, split: str):
    paths = DatasetPaths.standard(root, split)
    return read_panoptic(paths.panoptic_json, paths.panoptic_dir, paths.image_dir)


def _tight_bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@pytest.mark.parametrize("split", ["train", "val"])
def test_instances_and_panoptic_agree(world: Path, split: str) -> None:
    panoptic, categories = _panoptic(world, split)
    instances = {
        a.id: a for a in read_instances(world / f"annotations/instances_{split}.json").annotations
    }
    isthing = {c.id: c.isthing for c in categories}
    things_seen = 0
    for image in panoptic:
        masks = image.load_masks()
        ids = image.segment_ids()
        assert (ids != 0).all(), "every pixel belongs to a segment"
        assert set(np.unique(ids)) == {s.id for s in image.segments}
        assert image.image_path.is_file()
        for segment, mask in zip(image.segments, masks):
            assert segment.area == mask.sum() > 0
            assert list(segment.bbox) == _tight_bbox(mask)
            assert segment.isthing == isthing[segment.category_id]
            if segment.isthing:
                things_seen += 1
                inst = instances[segment.id]
                decoded = inst.decode(image.height, image.width)
                assert (decoded == mask).all()
                assert inst.area == segment.area and inst.bbox == segment.bbox
                assert inst.category_id == segment.category_id
            else:
                assert segment.id not in instances
    assert things_seen == len(instances)


def test_categories(world: Path) -> None:
    _, categories = _panoptic(world, "train")
    assert [(c.id, c.name, c.isthing) for c in categories] == [
        (c.id, c.name, c.isthing) for c in SYNTH_CATEGORIES
    ]
    assert sum(c.isthing for c in SYNTH_CATEGORIES) >= 8
    assert sum(not c.isthing for c in SYNTH_CATEGORIES) >= 3
    assert len({c["id"] for c in synth_categories_json()}) == len(SYNTH_CATEGORIES)


@pytest.mark.parametrize("name", ["entity_val", "entity_val_long", "entity_train"])
def test_markup_matches_offsets(world: Path, name: str) -> None:
    entity = read_entity(world / f"annotations/{name}.json")
    assert entity.captions
    for caption in entity.captions:
        parsed = parse_markup(caption.sentence_raw)
        assert parsed.text == caption.sentence
        assert [(s.entity_id, s.start, s.end, s.raw_start) for s in parsed.spans] == [
            (s.segment_id, s.start, s.end, s.raw_start) for s in caption.spans
        ]
        for span in caption.spans:
            assert caption.sentence[span.start : span.end] == span.phrase
            assert caption.sentence_raw[span.raw_start :].startswith(f"[{span.segment_id}]<")


def test_long_captions_have_more_entities(world: Path) -> None:
    short = read_entity(world / "annotations/entity_val.json").captions
    long = read_entity(world / "annotations/entity_val_long.json").captions
    assert np.mean([len(c.spans) for c in long]) > np.mean([len(c.spans) for c in short])
    assert any(c.sentence.count(".") >= 3 for c in long)


def test_entity_segments_belong_to_their_image(world: Path) -> None:
    samples = load_dataset(world, "val")  # raises if a phrase names a foreign segment
    for sample in samples:
        ids = {s.id for s in sample.panoptic.segments}
        assert sample.entities and sample.entities_long and len(sample.captions) >= 3
        for caption in sample.entities + sample.entities_long:
            assert {s.segment_id for s in caption.spans} <= ids


def test_references_same_category_other_image(world: Path) -> None:
    panoptic, _ = _panoptic(world, "val")
    category = {(p.image_id, s.id): s.category_id for p in panoptic for s in p.segments}
    for name in ("entity_val", "entity_val_long"):
        for caption in read_entity(world / f"annotations/{name}.json").captions:
            for span in caption.spans:
                ref = span.reference
                assert ref is not None and ref.image_id != caption.image_id
                assert (
                    category[(ref.image_id, ref.annotation_id)]
                    == category[(caption.image_id, span.segment_id)]
                )
                assert -1.0 <= ref.prob <= 1.0 + 1e-6
    train = read_entity(world / "annotations/entity_train.json")
    assert all(s.reference is None for c in train.captions for s in c.spans)


def test_captions_three_different_per_image(world: Path) -> None:
    by_image: dict[int, list[str]] = {}
    for caption in read_captions(world / "annotations/captions_train.json"):
        by_image.setdefault(caption.image_id, []).append(caption.caption)
    assert len(by_image) == 40
    assert all(len(set(texts)) >= 3 for texts in by_image.values())


def _objects(root: Path, split: str) -> dict[int, list[TextObject]]:
    """Per image, the things as the text generator saw them (attributes + mask centroids)."""
    panoptic, categories = _panoptic(root, split)
    names = {c.id: c.name for c in categories}
    path = root / f"annotations/instances_{split}.json"
    attributes = {a.id: a for a in read_instances(path).annotations}
    raw = {a["id"]: a for a in json.loads(path.read_text())["annotations"]}
    out = {}
    for image in panoptic:
        objects = []
        for segment, mask in zip(image.segments, image.load_masks()):
            if not segment.isthing:
                continue
            assert segment.id in attributes
            ys, xs = np.nonzero(mask)
            attr = raw[segment.id]["attributes"]
            objects.append(
                TextObject(
                    segment.id,
                    names[segment.category_id],
                    True,
                    attr["colour"],
                    attr["size"],
                    (ys.mean() / image.height, xs.mean() / image.width),
                )
            )
        out[image.image_id] = objects
    return out


def _resolve(words: list[str], objects: list[TextObject]) -> list[TextObject]:
    """Objects matching a description like ``[size] [colour] shape``."""
    return [
        o
        for o in objects
        if o.category == words[-1] and all(w in (o.size, o.colour) for w in words[:-1])
    ]


def test_refs_single_out_their_object(world: Path) -> None:
    objects = _objects(world, "train")
    refs = read_refs(world / "annotations/refs_train.json")
    assert len(refs) > 40
    relations_used = set()
    for ref in refs:
        assert ref.ann_id == ref.ref_id and ref.split == "train" and ref.sentences
        for sentence in ref.sentences:
            text = sentence.sent.replace("the ", "")
            relation = next((r for r in RELATIONS if f" {r} " in text), None)
            if relation is None:
                matches = _resolve(text.split(), objects[ref.image_id])
            else:
                relations_used.add(relation)
                head, tail = text.split(f" {relation} ")
                anchors = _resolve(tail.split(), objects[ref.image_id])
                assert len(anchors) == 1, sentence.sent
                matches = [
                    o
                    for o in _resolve(head.split(), objects[ref.image_id])
                    if holds(relation, o, anchors[0])
                ]
            assert [o.segment_id for o in matches] == [ref.ann_id], sentence.sent
            assert list(sentence.tokens) == sentence.sent.split()
    assert len(relations_used) >= 3


def test_holdout_combos(world: Path) -> None:
    def combos(split: str) -> set[tuple[str, str]]:
        data = json.loads((world / f"annotations/instances_{split}.json").read_text())
        names = {c["id"]: c["name"] for c in synth_categories_json()}
        return {(a["attributes"]["colour"], names[a["category_id"]]) for a in data["annotations"]}

    assert not combos("train") & set(HOLDOUT_COMBOS)
    assert set(HOLDOUT_COMBOS) <= combos("val")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    digests = []
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_synth(SynthConfig(tmp_path / run, 6, seed=seed, split="val"), progress=False)
        digests.append(_digest(tmp_path / run))
    assert len(digests[0]) == 6 * 2 + 6
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_stats_counts(world: Path) -> None:
    rows = {r.name: r for r in entity_stats(world, "val")}
    entity = read_entity(world / "annotations/entity_val.json")
    row = rows["entity_val.json"]
    assert row.images == 25 and row.captions == len(entity.captions)
    assert (
        row.entities
        == row.mask
        == row.phrase
        == row.visual
        == sum(len(c.spans) for c in entity.captions)
    )
    assert rows["entity_val_long.json"].entities > row.entities
    train = {r.name: r for r in entity_stats(world, "train")}["entity_train.json"]
    assert train.visual == 0 and train.entities > 0


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data_cli.register(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_synth_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _cli(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--images",
                "4",
                "--seed",
                "1",
                "--size",
                "64",
                "--split",
                "val",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "images/val").is_dir()
    assert _cli(["stats", "--data", str(tmp_path), "--split", "val", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"images": 4' in out and "entity_val_long.json" in out
    assert _cli(["stats", "--data", str(tmp_path), "--split", "val"]) == 0
    header, rule, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "images", "captions", "entities", "mask", "phrase", "visual"]
    assert set(rule) == {"-", " "} and any(r.split()[:2] == ["entity_val.json", "4"] for r in rows)
    with pytest.raises(SystemExit):
        _cli(["synth", "--out", str(tmp_path), "--images", "4", "--seed", "1", "--split", "x"])


def test_bad_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        write_synth(SynthConfig(tmp_path, 2, seed=0, split="test"), progress=False)
    with pytest.raises(ValueError, match="images=0"):
        write_synth(SynthConfig(tmp_path, 0, seed=0), progress=False)


def test_scene_labels_masks_and_occlusion() -> None:
    for index in range(20):
        scene = sample_scene(np.random.default_rng([9, index]), size=96)
        count = len(scene.segments)
        assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
        assert set(np.unique(scene.labels)) == set(range(1, count + 1)), "no empty segment"
        masks = scene.masks()
        assert masks.shape == (count, 96, 96) and (masks.sum(0) == 1).all()
        things = [s.isthing for s in scene.segments]
        assert things == sorted(things, reverse=True), "things first, then stuff"
    below = ShapeSpec(1, "circle", "red", "large", (20.0, 20.0), 12.0, 0.0)
    above = ShapeSpec(2, "square", "blue", "large", (20.0, 30.0), 12.0, 0.0)
    stamps = [shape_stamp(s, 48, 48) for s in (below, above)]
    labels = np.asarray(compose(stamps, 48, 48))
    assert labels[20, 30] == 2 and labels[20, 10] == 1 and labels[45, 45] == 0
    assert (labels == 2).sum() == stamps[1].area, "the top shape is fully visible"
    assert (labels == 1).sum() < stamps[0].area, "the bottom one is partly hidden"


def test_references_in_memory_equal_recomputed_from_files(world: Path, tmp_path: Path) -> None:
    for suffix in ("", "_long"):
        written = read_entity(world / f"annotations/entity_val{suffix}.json")
        out = tmp_path / f"recomputed{suffix}.json"
        again = write_references(
            world, "val", AppearanceEmbedder(), suffix=suffix, out=out, progress=False
        )
        assert again == written


def test_existing_split_is_refused_or_replaced(tmp_path: Path) -> None:
    root, fresh = tmp_path / "root", tmp_path / "fresh"
    write_synth(SynthConfig(root, 5, seed=1, size=48), progress=False)
    before = _digest(root)
    with pytest.raises(FileExistsError, match="train split already exists"):
        write_synth(SynthConfig(root, 3, seed=2, size=48), progress=False)
    assert _digest(root) == before, "a refused run changes nothing"
    write_synth(SynthConfig(root, 5, seed=1, size=48, split="val"), progress=False)
    write_synth(SynthConfig(root, 3, seed=2, size=48), overwrite=True, progress=False)
    assert len(list((root / "images/train").iterdir())) == 3, "stale images are gone"
    assert len(list((root / "images/val").iterdir())) == 5, "other splits are kept"
    write_synth(SynthConfig(fresh, 3, seed=2, size=48), progress=False)
    train = {k: v for k, v in _digest(root).items() if "train" in k}
    assert train == _digest(fresh)


def test_interrupted_split_has_no_panoptic_json(tmp_path: Path, monkeypatch) -> None:
    import findvl.data.synth.write as synth

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "write_entity", fail)
    with pytest.raises(KeyboardInterrupt):
        write_synth(SynthConfig(tmp_path, 2, seed=0, size=48), progress=False)
    assert (tmp_path / "images/train").is_dir()
    assert not (tmp_path / "annotations/panoptic_train.json").exists()
