"""Chance levels of the report's metrics table, against brute force and the real evaluator."""

import itertools
import json

import numpy as np
import pytest

from findvl.metrics.grounding import evaluate_grounding
from findvl.metrics.io import rle_to_json
from findvl.report import chance_levels, full_image_baseline, recall_chance
from findvl.tables import METRICS


def _brute_force_recall(k: int, relevant: list[int], gallery: int) -> float:
    """Percent of (query, permutation) pairs with a relevant item in the top ``k``."""
    hits = total = 0
    for r in relevant:
        for order in itertools.permutations(range(gallery)):
            hits += any(j < r for j in order[:k])  # items 0..r-1 are the relevant ones
            total += 1
    return 100.0 * hits / total


@pytest.mark.parametrize(
    ("k", "relevant", "gallery"),
    [(1, [1], 5), (2, [1], 5), (1, [2, 1], 5), (3, [2, 3], 6), (5, [1], 4), (2, [1, 0], 4)],
)
def test_recall_chance_matches_brute_force(k, relevant, gallery):
    assert recall_chance(k, relevant, gallery) == pytest.approx(
        _brute_force_recall(k, [r for r in relevant if r], gallery)
    )


def test_recall_chance_closed_forms():
    assert recall_chance(1, [1], 100) == pytest.approx(1.0)  # IR@1 = 1/N
    assert recall_chance(5, [1], 100) == pytest.approx(5.0)  # IR@5 = 5/N
    assert recall_chance(1, [2] * 50, 100) == pytest.approx(2.0)  # TR@1 = c/M
    assert recall_chance(10, [1], 8) == 100.0  # K beyond the gallery
    assert recall_chance(1, [], 10) is None and recall_chance(1, [1], 0) is None


def test_full_image_baseline_equals_the_evaluator(tmp_path):
    rng = np.random.default_rng(0)
    masks = [rng.random(size) < p for size, p in [((8, 8), 0.2), ((6, 10), 0.7), ((12, 4), 0.5)]]
    for name, pick in (("gt", lambda m: m), ("pred", lambda m: np.ones_like(m))):
        records = [
            {"image_id": i, "entity_id": 0, "segmentation": rle_to_json(pick(m))}
            for i, m in enumerate(masks)
        ]
        (tmp_path / f"{name}.json").write_text(json.dumps(records))
    ref = evaluate_grounding(tmp_path / "gt.json", tmp_path / "pred.json")
    ours = full_image_baseline([int(m.sum()) for m in masks], [m.size for m in masks])
    assert ours["cIoU"] == pytest.approx(ref.cIoU)
    assert ours["mIoU"] == pytest.approx(ref.mIoU)
    assert ours["P@0.5"] == pytest.approx(ref.precision["P@0.5"])
    assert full_image_baseline([], []) == {"cIoU": None, "mIoU": None, "P@0.5": None}


def test_chance_levels_cover_every_table_entry():
    metrics = {
        "meta": {"num_images": 10},
        "retrieval": {"IR@1": 30.0, "num_images": 10, "num_captions": 20},
        "interleave_retrieval": {"IR@5": 40.0, "num_gallery": 20},
    }
    grounding = {"cIoU": 12.0, "mIoU": 15.0, "P@0.5": 0.0}
    chance = chance_levels(
        metrics, captions_per_image=[2] * 10, full_image={"grounding": grounding}
    )
    assert set(chance) == {m.key for m in METRICS}
    assert chance["retrieval.IR@1"] == pytest.approx(10.0)
    assert chance["retrieval.IR@5"] == pytest.approx(50.0)
    assert chance["retrieval.TR@1"] == pytest.approx(10.0)  # 2 of 20 captions
    assert chance["interleave_retrieval.IR@5"] == pytest.approx(25.0)  # its own gallery
    assert chance["interleave_retrieval.IR@10"] == pytest.approx(50.0)
    assert chance["baselines.embedding_average.IR@5"] == pytest.approx(50.0)  # meta.num_images
    assert chance["grounding.P@0.5"] == 0.0 and chance["grounding.mIoU"] == 15.0
    assert chance["panoptic.PQ"] is None and chance["interactive.NoC@85"] is None
    assert chance["panoptic.PQ_things"] is None and chance["instance.AP50"] is None
    assert chance["interleave_retrieval_legend.IR@1"] == pytest.approx(10.0)  # meta.num_images
    assert chance["interleave_segmentation.cIoU"] is None  # no ground truth given
