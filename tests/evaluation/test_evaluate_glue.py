"""The writers and choices of findvl.evaluation, checked without a model."""

from __future__ import annotations

import numpy as np
import pytest

from findvl.data.readers.dataset import load_dataset
from findvl.data.readers.vocabulary import dataset_categories, vocabulary_of
from findvl.evaluation.common import SegmentMasks, interleaved_query, rounds, visual_query
from findvl.evaluation.generic import GenericWriter, gt_panoptic_dir, perfect_prediction
from findvl.evaluation.grounding import GroundingWriter


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_world):
    return tiny_world(tmp_path_factory.mktemp("world"))


def test_ground_truth_through_the_writers_scores_100(world, tmp_path):
    samples = load_dataset(world, "val")
    categories = dataset_categories(world, "val")
    vocab = vocabulary_of(categories)
    writer = GenericWriter(tmp_path, vocab)
    for sample in samples:
        masks = sample.panoptic.load_masks()
        writer.add(sample, perfect_prediction(sample, masks, vocab), masks)
    result = writer.finish(categories, gt_panoptic_dir(samples))
    assert result["panoptic"]["PQ"] == pytest.approx(100.0)
    assert result["instance"]["AP"] == pytest.approx(100.0)
    assert result["semantic"]["mIoU"] == pytest.approx(100.0)


def test_grounding_writer_perfect_and_empty(tmp_path):
    writer = GroundingWriter("g")
    gt = np.zeros((8, 8), bool)
    gt[2:5, 2:6] = True
    writer.add(1, 0, gt, gt)
    writer.add(1, 1, gt, np.zeros_like(gt))
    result = writer.finish(tmp_path)
    assert result["mIoU"] == pytest.approx(50.0)
    assert result["P@0.5"] == pytest.approx(50.0)
    assert GroundingWriter("none").finish(tmp_path)["cIoU"] is None


def test_visual_choice_is_seeded_and_about_half(world):
    samples = load_dataset(world, "val")
    by_id = {s.image_id: s for s in samples}
    segments = SegmentMasks()
    captions = [c for s in samples for c in s.entities]

    def visual(seed):
        return [
            [
                e.reference is not None
                for e in interleaved_query(
                    c, i, by_id=by_id, segments=segments, seed=seed
                ).text.entities
            ]
            for i, c in enumerate(captions)
        ]

    first, again, other = visual(0), visual(0), visual(1)
    assert first == again
    flat = [v for row in first for v in row]
    with_ref = sum(span.reference is not None for c in captions for span in c.spans)
    assert 0 < sum(flat) < with_ref
    assert first != other
    text_only = [
        interleaved_query(c, i, by_id=by_id, segments=segments, seed=0, visual=False)
        for i, c in enumerate(captions)
    ]
    assert all(e.reference is None for q in text_only for e in q.text.entities)


def test_visual_query_makes_the_first_usable_reference_visual(world):
    samples = load_dataset(world, "val")
    by_id, segments = {s.image_id: s for s in samples}, SegmentMasks()
    found = [(c, visual_query(c, by_id, segments)) for s in samples for c in s.entities]
    assert any(q is not None for _, q in found)
    for caption, query in found:
        usable = [
            j
            for j, span in enumerate(caption.spans)
            if span.reference is not None
            and span.reference.image_id in by_id
            and segments.of(by_id[span.reference.image_id].panoptic)
            .get(span.reference.annotation_id, np.zeros(1, bool))
            .any()
        ]
        if query is None:
            assert not usable
            continue
        assert query.entity == usable[0] and query.mask.any()
        assert query.image_id == caption.spans[query.entity].reference.image_id
        assert [e.reference is not None for e in query.text.entities] == [
            j == query.entity for j in range(len(caption.spans))
        ]
        assert tuple(query.image.shape[-2:]) == query.mask.shape


def test_rounds_cover_every_item_once():
    plan = rounds([2, 0, 3])
    assert plan == [[0, None, 0], [1, None, 1], [None, None, 2]]
    assert rounds([]) == []
