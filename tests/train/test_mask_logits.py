"""Masks read from their factors equal the dense masks: points, matched rows, the criterion."""

import pytest
import torch
from criterion_checks import assert_same_terms_and_grads, tiny_batch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.config import train_config
from findvl.train.criterion import FindCriterion, layer_masks
from findvl.train.mask_logits import MaskLogits, sample_by_image
from findvl.train.point_sampling import point_sample
from findvl.train.trainer import Trainer


def _factors(seed=0, layers=3, batch=4, q=5, m=6, size=(9, 11)):
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(layers, batch, q, m, generator=g)
    features = torch.randn(batch, m, *size, generator=g)
    dense = torch.einsum("lbqm,bmhw->lbqhw", embed, features)
    return embed, features, dense


def test_points_of_the_factors_equal_points_of_the_dense_masks():
    embed, features, dense = _factors()
    factored = MaskLogits.layered(embed, features)
    flat = MaskLogits(dense.flatten(0, 1))
    problems = torch.tensor([0, 5, 6, 11, 3, 3])  # several problems per image, one twice
    coords = torch.rand(len(problems), 17, 2, generator=torch.Generator().manual_seed(1))
    expected = point_sample(dense.flatten(0, 1)[problems], coords)
    torch.testing.assert_close(factored.at_points(problems, coords), expected)
    torch.testing.assert_close(flat.at_points(problems, coords), expected)


def test_rows_of_the_factors_equal_dense_rows_with_their_gradient():
    embed, features, _ = _factors(seed=2)
    embed.requires_grad_()
    features.requires_grad_()
    index = torch.tensor([7, 0, 59, 22, 23, 41, 7])  # problem * Q + query, unordered, repeated
    factored = MaskLogits.layered(embed, features).rows(index)
    dense = torch.einsum("lbqm,bmhw->lbqhw", embed, features).flatten(0, 2)[index]
    torch.testing.assert_close(factored, dense)
    weights = torch.randn_like(dense)
    grads = torch.autograd.grad((factored * weights).sum(), (embed, features))
    expected = torch.autograd.grad((dense * weights).sum(), (embed, features))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)


def test_sample_by_image_equals_one_sample_per_entry():
    _, features, _ = _factors(seed=3)
    image = torch.tensor([2, 0, 2, 2, 1])
    coords = torch.rand(5, 8, 2, generator=torch.Generator().manual_seed(4))
    got = sample_by_image(features, image, coords)
    expected = torch.cat(
        [point_sample(features[i : i + 1], c[None]) for i, c in zip(image, coords)]
    )
    torch.testing.assert_close(got, expected)
    assert sample_by_image(features, image[:0], coords[:0]).shape == (0, features.shape[1], 8)


def test_mask_logits_reject_a_half_given_form():
    embed, features, dense = _factors()
    with pytest.raises(ValueError, match="either"):
        MaskLogits(dense.flatten(0, 1), embed=embed[0])
    with pytest.raises(ValueError, match="share M"):
        MaskLogits(embed=embed[0], features=features[:, :2], image=torch.arange(4))


@pytest.mark.parametrize("every_layer", [False, True])
def test_criterion_on_factored_masks_equals_dense_masks(tmp_path, every_layer):
    """The training forward forms no dense masks; its losses and gradients are those of the
    dense masks of every layer."""
    loss = '{"num_points": 96, "match_points": 64, "choice_iou_temperature": 0.2}'
    trainer, examples, requests = tiny_batch(tmp_path, loss)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    criterion = FindCriterion(trainer.weights, match_every_layer=every_layer)
    results = []
    for dense in (True, False):
        out = trainer.model(
            [ex.image for ex in examples],
            requests,
            generator=torch.Generator().manual_seed(0),
            all_layer_masks=dense,
            dense_masks=dense,
        )
        layers = out.generic_segmentation.layers
        assert all((layer.masks is not None) == dense for layer in layers)
        terms = criterion(out, examples, torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(terms["total"], params, allow_unused=True)
        results.append((terms, grads))
    assert_same_terms_and_grads(*results, grad_rtol=1e-4)


def test_criterion_needs_masks_or_their_factors():
    embed, _, _ = _factors()
    layers = [type("Layer", (), {"masks": None, "embed": e, "features": None})() for e in embed]
    with pytest.raises(ValueError, match="dense_masks=False"):
        layer_masks(layers)


def test_a_training_step_equals_the_dense_unshared_step(tmp_path):
    """A step with a correction round: factored masks and one shared encoding give the losses
    and gradients of dense masks and two encodings."""
    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=4, seed=0, size=64), progress=False)
    overrides = [f'data.root="{data}"', 'loss={"num_points": 64}', "data.correction_prob=1.0"]
    config = train_config("find_tiny", overrides, steps=1, batch_size=4)
    results = []
    for dense in (True, False):
        trainer = Trainer(config, tmp_path / f"run{dense}", progress=False)
        if dense:
            trainer.criterion = FindCriterion(trainer.weights, dense_masks=True)
            trainer.share_encoding = False
        terms = trainer.train_step()
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        results.append((terms, torch.cat([g.flatten() for g in grads])))
    (ref, ref_grads), (got, got_grads) = results
    for name in ref:
        assert got[name] == pytest.approx(ref[name], rel=1e-5, abs=1e-5), name
    torch.testing.assert_close(got_grads, ref_grads, atol=1e-6, rtol=1e-4)
