"""Shared forwards give the numbers of one batch at a time (evaluation.batching, .prompts)."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
import torch

from findvl.data.clicks import clicks_to_masks, next_click
from findvl.data.readers.dataset import load_dataset
from findvl.evaluation import interactive
from findvl.evaluation.batching import (
    EncodedBatch,
    TokenCounts,
    Unit,
    chunks,
    concat_features,
    plan,
    select_features,
)
from findvl.evaluation.common import (
    SegmentMasks,
    batches,
    generator,
    load_image,
    rounds,
    torch_threads,
)
from findvl.evaluation.prompts import predraw
from findvl.evaluation.runner import evaluate_run
from findvl.model.requests import InteractiveSegmentation, VisualPrompt


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_world):
    return tiny_world(tmp_path_factory.mktemp("world"), images=5)


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model()


def _box(size, y0, y1, x0, x1) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_predraw_matches_the_model_draw(world, model):
    images = [load_image(s) for s in load_dataset(world, "val")[:3]]
    size = tuple(images[0].shape[1:])
    prompts = [
        VisualPrompt(_box(size, 0, 40, 0, 40), _box(size, 50, 60, 50, 60)),  # draws both
        VisualPrompt(_box(size, 10, 13, 10, 13)),  # fits: no draw
        VisualPrompt(_box(size, 5, 60, 20, 30)),  # draws
    ]
    with torch.no_grad():
        features = model.encode_images(images)
        request = InteractiveSegmentation([[p] for p in prompts])
        expected = model(features, [request], generator=torch.Generator().manual_seed(7))
        drawn = predraw(
            prompts, max_points=model.max_spatial_points, generator=torch.Generator().manual_seed(7)
        )
        request = InteractiveSegmentation([[d.prompt] for d in drawn])
        got = model(features, [request], generator=torch.Generator().manual_seed(8))
    assert drawn[1].prompt is prompts[1]
    assert drawn[0].prompt.negative is not None and drawn[2].prompt.negative is None
    assert max(d.points for d in drawn) <= model.max_spatial_points
    expected_masks = expected.interactive_segmentation.best_masks()
    assert torch.equal(expected_masks, got.interactive_segmentation.best_masks())


def test_select_and_concat_features(world, model):
    images = [load_image(s) for s in load_dataset(world, "val")]
    with torch.no_grad():
        parts = [model.encode_images(images[:2]), model.encode_images(images[2:])]
    pool = concat_features(parts)
    assert pool.batch.pixels.shape[0] == len(images)
    picked = select_features(pool, [3, 0, 0])
    assert picked.batch.sizes == [pool.batch.sizes[i] for i in (3, 0, 0)]
    assert torch.equal(picked.pixel.mask_features[1], parts[0].pixel.mask_features[0])
    assert torch.equal(picked.spatial_maps[0][0], parts[1].spatial_maps[0][1])
    assert select_features(pool, list(range(len(images)))) is pool


def test_plan_groups_equal_keys_within_the_row_limit():
    a, b = EncodedBatch(0, [], (64, 64), 0), EncodedBatch(1, [], (32, 64), 0)
    units = [
        Unit(a, [0, 1], [None] * 2, key=1),
        Unit(a, [0, 1], [None] * 2, key=2),
        Unit(b, [0], [None], key=1),  # other canvas
        Unit(a, [0, 1], [None] * 2, key=1),
        Unit(a, [0], [None], key=1),  # over the limit of the first group
    ]
    assert plan(units, {(64, 64): 4, (32, 64): 4}) == [[0, 3], [1], [2], [4]]
    assert plan(units, {(64, 64): 1, (32, 64): 1}) == [[0], [1], [2], [3], [4]]


def _run(model, root, out, forward_pixels):
    return evaluate_run(
        model,
        None,
        None,
        root,
        "val",
        seed=3,
        batch_size=2,
        interactive_objects=2,
        max_clicks=3,
        out_dir=out,
        progress=False,
        forward_pixels=forward_pixels,
        threads=1,
    )


def test_shared_forwards_equal_one_batch_at_a_time(world, model, tmp_path):
    # forward_pixels=1: one batch per chunk and one planned forward per actual forward
    shared = _run(model, world, tmp_path / "shared", 8 * 1024 * 1024)
    alone = _run(model, world, tmp_path / "alone", 1)
    assert shared == alone
    names = [str(p.relative_to(tmp_path / "alone")) for p in (tmp_path / "alone").rglob("*.*")]
    assert len(names) > 10
    scores = "retrieval_scores.npz"  # raw embeddings: BLAS may round a 2-row product otherwise
    match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "alone", tmp_path / "shared", [n for n in names if n != scores], shallow=False
    )
    assert not mismatch and not errors
    a, b = np.load(tmp_path / "alone" / scores), np.load(tmp_path / "shared" / scores)
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-6)


def _reference_curves(model, samples, task, batch_size, max_clicks, seed):
    """Interactive curves as one batch at a time computes them (every row in every forward)."""
    curves = []
    for i, batch in enumerate(batches(samples, batch_size)):
        features = model.encode_images([load_image(s) for s in batch])
        objects = [task._objects(s) for s in batch]
        for r, picks in enumerate(rounds([len(o) for o in objects])):
            sessions = [
                {"gt": objects[b][k], "clicks": [], "prev": None, "curve": [], "done": False}
                if k is not None
                else None
                for b, k in enumerate(picks)
            ]
            live = [s for s in sessions if s is not None]
            for c in range(max_clicks):
                for s in live:
                    if not s["done"]:
                        pred = s["prev"].numpy() > 0 if s["prev"] is not None else None
                        click = next_click(s["gt"], pred)
                        s["done"] = click is None
                        if click is not None:
                            s["clicks"].append(click)
                if all(s["done"] for s in live):
                    break
                rows = [s if s is not None and s["clicks"] else live[0] for s in sessions]
                prompts = []
                for s in rows:
                    pos, neg = clicks_to_masks(s["clicks"], s["gt"].shape)
                    negative = torch.from_numpy(neg) if neg.any() else None
                    prompts.append([VisualPrompt(torch.from_numpy(pos), negative)])
                previous = None
                if c > 0:
                    previous = [
                        s["prev"] if s["prev"] is not None else torch.full(s["gt"].shape, -10.0)
                        for s in rows
                    ]
                request = InteractiveSegmentation(prompts, previous=previous)
                gen = generator(seed, interactive.TASK_KEY, i, r * 100 + c)
                out = model(features, [request], generator=gen)
                best = out.interactive_segmentation.best_masks()
                for b, s in enumerate(sessions):
                    if s is None or s["done"]:
                        continue
                    s["prev"] = out.to_original(best[b, :1], b)[0].float()
                    pred = s["prev"].numpy() > 0
                    union = np.logical_or(s["gt"], pred).sum()
                    s["curve"].append(float(np.logical_and(s["gt"], pred).sum() / union))
                    s["done"] = s["curve"][-1] >= interactive.STOP_IOU
            curves += [s["curve"] for s in live]
    return curves


def test_interactive_sessions_that_stop_early_match_the_reference(world, model, monkeypatch):
    # a low bar so that sessions stop after different numbers of clicks
    monkeypatch.setattr(interactive, "STOP_IOU", 0.08)
    samples = load_dataset(world, "val")
    task = interactive.InteractiveTask(0, 3, 6, SegmentMasks())
    with torch.no_grad(), torch_threads(1):
        numbered = list(enumerate(batches(samples, 2)))
        for chunk in chunks(model, numbered, load_image, 8 * 1024 * 1024):
            task.run(model, chunk)
        expected = _reference_curves(model, samples, task, 2, 6, 0)
    lengths = {len(c) for c in task.curves}
    assert len(lengths) > 1, f"every session took the same number of clicks: {lengths}"
    assert task.curves == expected


def test_torch_threads_is_scoped():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be positive"), torch_threads(0):
        pass


def test_token_counts_are_those_of_the_encoder(model):
    texts = ["a red square", "two small circles near a big triangle", "a red square"]
    counts = TokenCounts(model, chunk_size=1)(texts)
    assert counts == [int(model.language.encode([t]).mask.sum()) for t in texts]
