import itertools
import subprocess
import sys

import pytest
import torch

from findvl.train.matcher import (
    HungarianMatcher,
    panoptic_class_cost,
    proposal_class_cost,
)
from findvl.train.point_sampling import point_sample, uncertain_point_coords


def test_point_sample_matches_pixel_centres():
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    # pixel (row 1, col 2) centre is at x=(2+0.5)/4, y=(1+0.5)/3
    coords = torch.tensor([[[2.5 / 4, 1.5 / 3], [0.5 / 4, 0.5 / 3]]])
    out = point_sample(img, coords)
    assert out.shape == (1, 1, 2)
    assert torch.allclose(out[0, 0], torch.tensor([6.0, 0.0]), atol=1e-5)


def test_point_sample_rejects_bad_shapes():
    with pytest.raises(ValueError, match="coords"):
        point_sample(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3))


def test_uncertain_points_deterministic_and_focused():
    x = (torch.arange(32.0) + 0.5) / 32
    logits = ((x - 0.5) * 40).expand(2, 1, 32, 32).contiguous()  # zero at x = 0.5
    a = uncertain_point_coords(logits, 200, generator=torch.Generator().manual_seed(0))
    b = uncertain_point_coords(logits, 200, generator=torch.Generator().manual_seed(0))
    c = uncertain_point_coords(logits, 200, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 200, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a <= 1)).all()
    # the 150 importance points (of 600 candidates) sit near x = 0.5; the 50 others are uniform
    assert ((a[:, :150, 0] - 0.5).abs() < 0.15).float().mean() > 0.95
    assert ((a[:, 150:, 0] - 0.5).abs() > 0.2).any()


def _brute_force(cost):
    q, t = len(cost), len(cost[0])
    best = None
    if q >= t:
        for perm in itertools.permutations(range(q), t):
            total = sum(cost[perm[j]][j] for j in range(t))
            best = total if best is None else min(best, total)
    else:
        for perm in itertools.permutations(range(t), q):
            total = sum(cost[i][perm[i]] for i in range(q))
            best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed,q,t", [(0, 5, 3), (1, 4, 4), (2, 3, 5), (3, 6, 2)])
def test_matcher_equals_brute_force(seed, q, t):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(q, 16, 16, generator=g) * 3
    gt = (torch.rand(t, 32, 32, generator=g) > 0.5).float()
    logits = torch.randn(q, 7, generator=g)
    classes = torch.randint(0, 6, (t,), generator=g)
    matcher = HungarianMatcher(num_points=256)
    class_cost = panoptic_class_cost(logits, classes)
    cost = matcher.cost_matrix(pred, gt, class_cost, generator=torch.Generator().manual_seed(9))
    m = matcher.match(pred, gt, class_cost, generator=torch.Generator().manual_seed(9))
    assert m.pred_idx.dtype == torch.int64 and len(m.pred_idx) == min(q, t)
    assert len(set(m.pred_idx.tolist())) == len(m.pred_idx)
    assert len(set(m.tgt_idx.tolist())) == len(m.tgt_idx)
    got = cost[m.pred_idx, m.tgt_idx].sum().item()
    assert got == pytest.approx(_brute_force(cost.tolist()), abs=1e-5)


def _boxes(n, size, g):
    masks = torch.zeros(n, size, size)
    for i in range(n):
        x0, y0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
        w, h = torch.randint(4, size // 2, (2,), generator=g).tolist()
        masks[i, y0 : y0 + h, x0 : x0 + w] = 1.0
    return masks


def test_matcher_finds_identical_masks():
    g = torch.Generator().manual_seed(0)
    gt = _boxes(3, 24, g)
    order = torch.tensor([2, 0, 1])
    pred = (gt[order] * 2 - 1) * 20  # prediction i is target order[i]
    pred = torch.cat([pred, torch.randn(2, 24, 24, generator=g)])
    m = HungarianMatcher(num_points=500).match(pred, gt)
    assert dict(zip(m.pred_idx.tolist(), m.tgt_idx.tolist())) == {0: 2, 1: 0, 2: 1}


def test_proposal_class_cost_is_softmax_over_proposals():
    logits = torch.randn(6, 3)
    cost = proposal_class_cost(logits)
    assert torch.allclose(cost.sum(0), -torch.ones(3))


def test_matcher_zero_targets_and_nan():
    matcher = HungarianMatcher(num_points=64)
    m = matcher.match(torch.randn(4, 8, 8), torch.zeros(0, 8, 8))
    assert m.pred_idx.numel() == 0 and m.tgt_idx.dtype == torch.int64
    pred = torch.randn(4, 8, 8)
    pred[1, 2, 3] = float("nan")
    pred[1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        matcher.match(pred, torch.ones(2, 8, 8))
    bad_class = torch.zeros(4, 2)
    bad_class[0, 0] = float("inf")
    with pytest.raises(ValueError, match="'class'"):
        matcher.match(torch.randn(4, 8, 8), torch.ones(2, 8, 8), bad_class)


def test_train_parts_do_not_import_model_data_eval():
    code = (
        "import sys, findvl.train.matcher, findvl.train.losses, findvl.train.optim, "
        "findvl.train.checkpoint, findvl.train.logging, findvl.train.distributed, "
        "findvl.train.point_sampling\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "(['findvl', 'model'], ['findvl', 'data'], ['findvl', 'metrics'])]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_match_points_set_the_matching_costs_apart_from_the_loss_points():
    """A 4x4 object on a 64x64 canvas: with a few uniform points the matching is often decided
    by noise; with ``match_points`` at the canvas size it picks the exact prediction every time,
    whatever ``num_points`` the losses use."""
    from findvl.train.criterion import FindCriterion
    from findvl.train.losses import LossWeights

    gt = torch.zeros(1, 64, 64)
    gt[0, 30:34, 30:34] = 1
    exact = gt[0] * 20 - 10
    shifted = torch.roll(exact, shifts=(3, 3), dims=(0, 1))
    empty = torch.full((64, 64), -10.0)
    pred = torch.stack([empty, shifted, exact])

    def picks(weights: LossWeights) -> list[int]:
        matcher = FindCriterion(weights).matcher
        gens = [torch.Generator().manual_seed(s) for s in range(20)]
        return [int(matcher.match(pred, gt, generator=g).pred_idx[0]) for g in gens]

    assert picks(LossWeights(num_points=16, match_points=4096)) == [2] * 20
    assert picks(LossWeights(num_points=4096, match_points=16)) != [2] * 20


def test_iou_choice_targets_put_the_mass_on_the_best_masks():
    from findvl.train.criterion import iou_choice_targets

    gt = torch.zeros(2, 32, 32)
    gt[0, :16] = 1  # image 0: top half
    gt[1, :, :8] = 1  # image 1: left quarter
    exact = gt * 20 - 10
    half = exact.clone()
    half[:, :8] = -10  # covers half of image 0's target
    empty = torch.full((32, 32), -10.0)
    masks = torch.stack(
        [torch.stack([empty, half[0], exact[0]]), torch.stack([exact[1], empty, empty])]
    )
    dist = iou_choice_targets(masks[None], gt, [1, 1], 2, temperature=0.1)  # 1x2x2x3
    assert dist.shape == (1, 2, 2, 3)
    assert dist[0, 0, 0].argmax() == 2 and dist[0, 0, 0, 1] > dist[0, 0, 0, 0]
    assert dist[0, 1, 0].argmax() == 0
    torch.testing.assert_close(dist[0, 0, 1], torch.full((3,), 1 / 3))  # padded target row
    torch.testing.assert_close(dist.sum(-1), torch.ones(1, 2, 2))
