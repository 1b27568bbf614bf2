"""Prompt samplers and the click simulator."""

from __future__ import annotations

import numpy as np
import pytest

from findvl.data.clicks import Click, clicks_to_masks, next_click
from findvl.data.prompts import (
    OFFICIAL_KINDS,
    PROMPT_KINDS,
    sample_prompt,
    sample_random_prompt,
)


def _objects() -> list[np.ndarray]:
    yy, xx = np.ogrid[0:64, 0:80]
    disk = (yy - 30) ** 2 + (xx - 40) ** 2 <= 15**2
    bar = np.zeros((64, 80), dtype=bool)
    bar[10:14, 5:70] = True  # thin: few interior pixels
    blob = disk & ~((yy - 30) ** 2 + (xx - 40) ** 2 <= 6**2)  # a ring
    corner = np.zeros((64, 80), dtype=bool)
    corner[:9, :9] = True  # touches the image border
    return [disk, bar, blob, corner]


def _bbox_mask(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    out = np.zeros_like(mask)
    out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return out


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_positive_prompts_on_the_object(kind: str) -> None:
    rng = np.random.default_rng(0)
    for mask in _objects():
        for _ in range(5):
            prompt = sample_prompt(mask, kind, rng)
            assert prompt.shape == mask.shape and prompt.dtype == bool and prompt.any()
            if kind == "box":
                assert (prompt == _bbox_mask(mask)).all()
            else:
                assert not (prompt & ~mask).any(), f"{kind} leaves the object"


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_negative_prompts_off_the_object(kind: str) -> None:
    rng = np.random.default_rng(1)
    for mask in _objects():
        for _ in range(5):
            prompt = sample_prompt(mask, kind, rng, negative=True)
            assert prompt.shape == mask.shape and prompt.any()
            assert not (prompt & mask).any(), f"negative {kind} touches the object"


def test_point_prefers_the_interior() -> None:
    mask = _objects()[0]
    rng = np.random.default_rng(2)
    centres = []
    for _ in range(50):
        ys, xs = np.nonzero(sample_prompt(mask, "point", rng))
        centres.append(np.hypot(ys.mean() - 30, xs.mean() - 40))
    assert np.mean(centres) < 8.0  # the disk has radius 15; uniform sampling gives ~10


def test_prompts_are_seeded() -> None:
    mask = _objects()[2]
    for kind in PROMPT_KINDS:
        a = sample_prompt(mask, kind, np.random.default_rng(7))
        b = sample_prompt(mask, kind, np.random.default_rng(7))
        assert (a == b).all()
    scribbles = {
        sample_prompt(mask, "scribble", np.random.default_rng(s)).tobytes() for s in range(5)
    }
    assert len(scribbles) > 1


def test_random_prompt_mix() -> None:
    rng = np.random.default_rng(3)
    mask = _objects()[0]
    kinds = [sample_random_prompt(mask, rng)[0] for _ in range(200)]
    assert set(kinds) == set(OFFICIAL_KINDS)
    assert all(kinds.count(k) > 25 for k in OFFICIAL_KINDS)
    kind, prompt = sample_random_prompt(mask, rng, kinds=("box",), probs=None)
    assert kind == "box" and prompt.any()
    with pytest.raises(ValueError, match="probs"):
        sample_random_prompt(mask, rng, kinds=("box", "point"), probs=(0.5, 0.6))


def test_prompt_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kind"):
        sample_prompt(_objects()[0], "lasso", rng)
    with pytest.raises(ValueError, match="empty"):
        sample_prompt(np.zeros((4, 4), dtype=bool), "point", rng)
    with pytest.raises(ValueError, match="bool"):
        sample_prompt(np.ones((4, 4), dtype=np.uint8), "point", rng)
    with pytest.raises(ValueError, match="whole image"):
        sample_prompt(np.ones((4, 4), dtype=bool), "point", rng, negative=True)


def test_first_click_at_the_centre() -> None:
    gt = np.zeros((21, 21), dtype=bool)
    gt[5:16, 3:14] = True  # an 11x11 square centred at (10, 8)
    assert next_click(gt) == Click(10, 8, True)


def test_click_corrects_the_larger_error() -> None:
    gt = np.zeros((30, 30), dtype=bool)
    gt[5:25, 5:25] = True
    pred = gt.copy()
    pred[5:25, 15:25] = False  # a 20x10 false-negative band
    pred[0:3, 0:3] = True  # a small false positive
    click = next_click(gt, pred)
    assert click.positive and gt[click.y, click.x] and not pred[click.y, click.x]
    assert 17 <= click.x <= 22
    pred = gt.copy()
    pred[0:20, 26:30] = True  # a 20x4 false positive against the border, nothing missed
    click = next_click(gt, pred)
    assert not click.positive and pred[click.y, click.x] and not gt[click.y, click.x]
    assert next_click(gt, gt.copy()) is None


def test_border_counts_as_outside() -> None:
    gt = np.zeros((10, 40), dtype=bool)
    gt[:, :20] = True  # touches the top, bottom and left borders
    click = next_click(gt)  # distance 5 from the top/bottom borders; ties go row-major first
    assert (click.y, click.x) == (4, 4)


def test_clicks_to_masks() -> None:
    clicks = [Click(5, 5, True), Click(15, 2, False)]
    pos, neg = clicks_to_masks(clicks, (20, 20), radius=2)
    assert pos[5, 5] and pos[5, 7] and not pos[5, 8] and pos.sum() == 13
    assert neg[15, 2] and not (pos & neg).any()
    with pytest.raises(ValueError, match="outside"):
        clicks_to_masks([Click(25, 0, True)], (20, 20))
    with pytest.raises(ValueError, match="shape"):
        next_click(np.zeros((4, 4), dtype=bool), np.zeros((4, 5), dtype=bool))
