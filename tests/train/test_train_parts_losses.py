import math

import pytest
import torch
import torch.nn.functional as F

from findvl.train.contrastive import infonce, token_infonce
from findvl.train.losses import (
    LossWeights,
    dice_loss,
    mask_losses,
    panoptic_class_loss,
    panoptic_targets,
    proposal_ce_loss,
    proposal_targets,
    sigmoid_bce_loss,
)


def _box_masks(n, size):
    masks = torch.zeros(n, size, size)
    for i in range(n):
        masks[i, 2 * i : 2 * i + size // 2, i : i + size // 3] = 1.0
    return masks


def test_perfect_masks_give_near_zero_dice_and_bce():
    gt = _box_masks(3, 128)
    pred = (gt * 2 - 1) * 30  # confident logits, same resolution
    g = torch.Generator().manual_seed(0)
    bce, dice = mask_losses(pred, gt, 3, num_points=512, importance_sample_ratio=0.0, generator=g)
    assert 0 <= dice.item() < 0.03 and 0 <= bce.item() < 0.5
    # importance sampling puts points on the boundaries, where GT is interpolated to ~0.5
    bce_is, dice_is = mask_losses(pred, gt, 3, num_points=512, generator=g)
    bad_bce, bad_dice = mask_losses(-pred, gt, 3, num_points=512, generator=g)
    assert bad_dice.item() > 0.9 and bad_dice.item() > 5 * dice_is.item()
    assert bad_bce.item() > 2 * bce_is.item()


def test_mask_losses_accept_higher_resolution_targets_and_backprop():
    gt = _box_masks(2, 64)
    pred = torch.randn(2, 16, 16, requires_grad=True)
    bce, dice = mask_losses(pred, gt, 2.0, num_points=256, generator=torch.Generator())
    (bce + dice).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_mask_losses_empty_is_zero_with_graph():
    pred = torch.randn(0, 8, 8, requires_grad=True)
    bce, dice = mask_losses(pred, torch.zeros(0, 16, 16), 1.0)
    assert bce.item() == 0 and dice.item() == 0 and bce.requires_grad
    with pytest.raises(ValueError, match="same M"):
        mask_losses(torch.zeros(2, 8, 8), torch.zeros(3, 8, 8), 1.0)


def test_point_losses_match_definitions():
    logits = torch.randn(3, 50)
    labels = (torch.rand(3, 50) > 0.5).float()
    expected_bce = F.binary_cross_entropy_with_logits(logits, labels) * 3 / 2
    assert sigmoid_bce_loss(logits, labels, 2).item() == pytest.approx(expected_bce.item())
    p = logits.sigmoid()
    per = 1 - (2 * (p * labels).sum(1) + 1) / (p.sum(1) + labels.sum(1) + 1)
    assert dice_loss(logits, labels, 4).item() == pytest.approx(per.sum().item() / 4)


def test_panoptic_class_loss_downweights_no_object():
    k = 4
    logits = torch.randn(2, 6, k + 1)
    gt = [torch.tensor([1, 3]), torch.tensor([0])]
    matches = [(torch.tensor([4, 0]), torch.tensor([0, 1])), (torch.tensor([2]), torch.tensor([0]))]
    targets = torch.stack([panoptic_targets(6, k, c, p, t) for c, (p, t) in zip(gt, matches)])
    assert targets[0].tolist() == [3, k, k, k, 1, k]
    loss = panoptic_class_loss(logits, targets, no_object_weight=0.1)
    per = F.cross_entropy(logits.reshape(-1, k + 1), targets.reshape(-1), reduction="none")
    w = torch.where(targets.reshape(-1) == k, 0.1, 1.0)
    assert loss.item() == pytest.approx(((per * w).sum() / w.sum()).item(), rel=1e-6)


def test_proposal_ce_with_groups_and_no_targets():
    logits = torch.randn(3, 5, requires_grad=True)  # 3 phrases x 5 proposals
    target = proposal_targets(5, 3, torch.tensor([4, 1, 2]), torch.tensor([0, 1, 2]))
    assert torch.equal(target.argmax(-1), torch.tensor([4, 1, 2]))
    loss = proposal_ce_loss(logits, target)
    expected = F.cross_entropy(logits, torch.tensor([4, 1, 2]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # phrases 0 and 2 have the same text: each targets half of proposals 4 and 2
    grouped = proposal_targets(
        5, 3, torch.tensor([4, 1, 2]), torch.tensor([0, 1, 2]), groups=torch.tensor([7, 8, 7])
    )
    assert grouped[0].tolist() == [0, 0, 0.5, 0, 0.5] == grouped[2].tolist()
    assert torch.allclose(grouped.sum(-1), torch.ones(3))
    empty = proposal_ce_loss(logits[:0], torch.zeros(0, 5))
    assert empty.item() == 0 and not math.isnan(empty.item())
    unmatched = proposal_ce_loss(logits, torch.zeros(3, 5))
    assert unmatched.item() == 0
    unmatched.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 5))


def test_infonce_small_for_separated_pairs_and_symmetric():
    a = torch.eye(8, 16) * 3
    scale = torch.tensor(math.log(100.0))
    assert infonce(a, a.clone(), scale).item() < 1e-3
    b = torch.randn(8, 16)
    assert infonce(a, b, scale).item() > 0.5
    assert infonce(a, b, scale).item() == pytest.approx(infonce(b, a, scale).item(), rel=1e-6)
    # the scale is clamped at 100
    assert infonce(a, b, torch.tensor(10.0)).item() == pytest.approx(
        infonce(a, b, scale).item(), rel=1e-6
    )


def test_infonce_matches_reference_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    s = torch.tensor(2.0)
    logits = s.exp() * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    y = torch.arange(5)
    ref = (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2
    assert infonce(a, b, s).item() == pytest.approx(ref.item(), rel=1e-6)


def test_loss_weights_defaults_and_unknown_key():
    w = LossWeights()
    assert (w.class_ce, w.mask_bce, w.mask_dice, w.no_object) == (2.0, 5.0, 5.0, 0.1)
    assert (w.retrieval, w.interleave_itc, w.num_points) == (8.0, 8.0, 12544)
    assert LossWeights.from_dict(w.to_dict()) == w
    assert LossWeights.from_dict({"mask_bce": 1.5}).mask_bce == 1.5
    with pytest.raises(ValueError, match="mask_bcee"):
        LossWeights.from_dict({"mask_bcee": 1.0})
    with pytest.raises(ValueError, match="retrieval"):
        LossWeights.from_dict({"retrieval": "high"})
    with pytest.raises(ValueError, match="num_points.*integer"):
        LossWeights.from_dict({"num_points": 100.5})
    with pytest.raises(ValueError, match="no_object"):
        LossWeights.from_dict({"no_object": -1.0})


def test_interactive_loss_weights_have_the_task_name_and_read_earlier_keys():
    w = LossWeights()
    assert (w.interactive_ce, w.interactive_bce, w.interactive_dice) == (0.4, 1.0, 1.0)
    assert not any(name.startswith("spatial") for name in w.to_dict())
    old = LossWeights.from_dict({"spatial_ce": 0.2, "spatial_dice": 3.0})
    assert (old.interactive_ce, old.interactive_dice) == (0.2, 3.0)


def _token_reference(objects, tokens, valid, scale, w=0.7):
    """The token term written out with loops over images, captions and tokens."""
    b = objects.shape[0]
    pooled = torch.nn.functional.normalize(objects, dim=-1).mean(1)
    words = torch.nn.functional.normalize(tokens, dim=-1)
    cands = [(c, t) for c in range(b) for t in range(tokens.shape[1]) if valid[c, t]]
    s = scale.exp().clamp(max=100)
    i2t, t2i = 0.0, 0.0
    for i in range(b):
        logits = torch.stack([s * pooled[i] @ words[c, t] for c, t in cands]).log_softmax(0)
        pos = [(k, t + 1) for k, (c, t) in enumerate(cands) if c == i]  # 1-based positions
        total = sum(p for _, p in pos)
        i2t = i2t - sum(p / total * logits[k] for k, p in pos)
        per_token = []
        for k, p in pos:
            t = cands[k][1]
            lp = torch.stack([s * pooled[j] @ words[i, t] for j in range(b)]).log_softmax(0)
            per_token.append(p / total * lp[i])
        t2i = t2i - sum(per_token)
    return w * i2t / b + (1 - w) * t2i / b


def test_token_infonce_matches_a_written_out_reference_and_learns():
    g = torch.Generator().manual_seed(0)
    objects = torch.randn(3, 4, 8, generator=g)
    tokens = torch.randn(3, 5, 8, generator=g)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    scale = torch.tensor(2.0)
    got = token_infonce(objects, tokens, valid, scale)
    assert got.item() == pytest.approx(
        _token_reference(objects, tokens, valid, scale).item(), rel=1e-5
    )
    # padding tokens take no part: changing them changes nothing
    noisy = tokens.clone()
    noisy[~valid] = 100.0
    assert token_infonce(objects, noisy, valid, scale).item() == pytest.approx(got.item(), rel=1e-6)
    # gradient steps on the objects alone bring it well down
    learnt = objects.clone().requires_grad_(True)
    opt = torch.optim.Adam([learnt], lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        token_infonce(learnt, tokens, valid, scale).backward()
        opt.step()
    assert token_infonce(learnt, tokens, valid, scale).item() < 0.6 * got.item()
