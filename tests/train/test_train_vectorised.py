"""The batched matcher and criterion equal the per-image reference (same seeds, same numbers)."""

from types import SimpleNamespace

import pytest
import torch
from criterion_checks import assert_same_terms_and_grads, tiny_batch

from findvl.model.outputs import (
    ClassScores,
    FindOutput,
    GenericSegmentationOutput,
    ProposalScores,
    TargetedSegmentationOutput,
)
from findvl.train.criterion import FindCriterion
from findvl.train.criterion_reference import ReferenceCriterion
from findvl.train.losses import LossWeights
from findvl.train.matcher import (
    HungarianMatcher,
    panoptic_class_cost,
    panoptic_class_costs,
    proposal_class_cost,
)
from findvl.train.point_sampling import (
    draw_candidate_points,
    select_uncertain_points,
    uncertain_point_coords,
)

Q, K, LAYERS, CANVAS = 6, 5, 3, (32, 32)


def test_candidate_draws_per_group_equal_one_call_per_group():
    logits = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    expected = torch.cat([uncertain_point_coords(x, 20, generator=g) for x in logits.split(3)])
    g = torch.Generator().manual_seed(1)
    draws = [draw_candidate_points(len(x), 20, generator=g) for x in logits.split(3)]
    got = select_uncertain_points(
        logits, torch.cat([c for c, _ in draws]), torch.cat([f for _, f in draws]), 15
    )
    assert torch.equal(got, expected)


def test_match_many_equals_one_match_per_problem():
    g = torch.Generator().manual_seed(0)
    counts = [3, 0, 8, 1, 6]  # an image without targets; one with more targets than proposals
    pred = torch.randn(len(counts), Q, 8, 8, generator=g) * 3
    gts = [(torch.rand(c, 16, 16, generator=g) > 0.5).float() for c in counts]
    logits = torch.randn(len(counts), Q, K + 1, generator=g)
    classes = [torch.randint(0, K, (c,), generator=g) for c in counts]
    matcher = HungarianMatcher(num_points=64)
    costs = panoptic_class_costs(logits, classes)
    for i, c in enumerate(classes):
        torch.testing.assert_close(costs[i, :, : len(c)], panoptic_class_cost(logits[i], c))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = [
        matcher.match(p, t, panoptic_class_cost(lg, c), generator=g1)
        for p, t, lg, c in zip(pred, gts, logits, classes)
    ]
    got = matcher.match_many(pred, torch.cat(gts), counts, costs, generator=g2)
    for i, m in enumerate(expected):
        assert torch.equal(got.of(i).pred_idx, m.pred_idx)
        assert torch.equal(got.of(i).tgt_idx, m.tgt_idx)
    assert torch.equal(g1.get_state(), g2.get_state())  # the same numbers were drawn
    targeted = torch.randn(3, Q, 4, generator=g)
    torch.testing.assert_close(proposal_class_cost(targeted)[1], proposal_class_cost(targeted[1]))


def test_match_many_rejects_non_finite_costs():
    matcher = HungarianMatcher(num_points=16)
    pred = torch.randn(2, Q, 8, 8)
    cost = torch.zeros(2, Q, 3)
    cost[1, 0, 0] = float("inf")
    cost[0, :, 2] = float("nan")  # past problem 0's count: ignored
    matcher.match_many(pred, torch.ones(3, 8, 8), [2, 1], torch.where(cost.isinf(), 0.0, cost))
    with pytest.raises(ValueError, match="'class'"):
        matcher.match_many(pred, torch.ones(3, 8, 8), [2, 1], cost)


def _example(g, n_masks, size, segments, phrases, are_classes):
    masks = torch.rand(n_masks, *size, generator=g) > 0.6
    return SimpleNamespace(
        masks=masks,
        classes=torch.randint(0, K, (n_masks,), generator=g),
        phrases=phrases,
        phrase_segments=segments,
        phrases_are_classes=are_classes,
        prompt_segments=segments[:2],
        entity_segments=segments[::-1],
    )


def _scores(g, batch, num_targets, width, kind=ProposalScores):
    """``kind`` layers: ``logits [B,num_targets,width]`` (``ClassScores``: ``[B,N,K+1]``)."""
    layers = []
    for _ in range(LAYERS):
        masks = (torch.randn(batch, Q, 8, 8, generator=g) * 3).requires_grad_()
        logits = torch.randn(batch, num_targets, width, generator=g)
        layers.append(kind(masks=masks, logits=logits.requires_grad_()))
    return layers


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    examples = [
        _example(g, 3, CANVAS, [0, 1, 2], ["a cat", "a dog", "a cat"], False),
        _example(g, 9, (28, 30), [0, 1, 2, 3, 4, 5, 6, 7], list("abcdeafa"), True),
        _example(g, 1, CANVAS, [0], ["sky"], False),
        _example(g, 2, (30, 32), [1], ["b"], True),
    ]
    batch, t = len(examples), 8
    targeted = []
    for _ in range(3):
        layers = _scores(g, batch, t, Q)
        for layer in layers:  # padded targets hold garbage: it must not matter
            with torch.no_grad():
                for b, ex in enumerate(examples):
                    layer.logits[b, len(ex.phrase_segments) :] = float("nan")
        targeted.append(
            TargetedSegmentationOutput(
                layers=layers, valid=torch.ones(batch, t, dtype=torch.bool), queries=None
            )
        )
    out = FindOutput(
        input_sizes=[tuple(ex.masks.shape[-2:]) for ex in examples],
        original_sizes=[tuple(ex.masks.shape[-2:]) for ex in examples],
        canvas=CANVAS,
        logit_scale=torch.tensor(2.0),
        generic_segmentation=GenericSegmentationOutput(
            layers=_scores(g, batch, Q, K + 1, ClassScores),
            class_names=list("vwxyz"),
            class_embeddings=None,
        ),
        grounded_segmentation=targeted[0],
        interactive_segmentation=targeted[1],
        interleave_segmentation=targeted[2],
    )
    return out, examples


def _leaves(out):
    tasks = (
        out.generic_segmentation,
        out.grounded_segmentation,
        out.interactive_segmentation,
        out.interleave_segmentation,
    )
    return [t for task in tasks for layer in task.layers for t in (layer.masks, layer.logits)]


@pytest.mark.parametrize("every_layer", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("initial_choice", [1.0, 0.0])
def test_batched_criterion_equals_per_image_reference(every_layer, seed, initial_choice):
    weights = LossWeights(num_points=48, initial_choice=initial_choice)
    results = []
    for criterion_type in (ReferenceCriterion, FindCriterion):
        out, examples = _batch(seed)
        g = torch.Generator().manual_seed(11)
        terms = criterion_type(weights, match_every_layer=every_layer)(out, examples, g)
        terms["total"].backward()
        grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in _leaves(out)]
        results.append((terms, grads, g.get_state()))
    (ref, ref_grads, ref_state), (got, got_grads, got_state) = results
    assert sorted(ref) == sorted(got)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-5, msg=name)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)  # NaN-free, padded rows 0
    assert torch.equal(got_state, ref_state)  # the same random numbers were drawn


def test_batched_criterion_equals_reference_on_the_tiny_model(tmp_path):
    trainer, examples, requests = tiny_batch(tmp_path, '{"num_points": 128}')
    out = trainer.model(
        [ex.image for ex in examples],
        requests,
        generator=torch.Generator().manual_seed(0),
        all_layer_masks=True,
    )
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    results = []
    for criterion_type in (ReferenceCriterion, FindCriterion):
        criterion = criterion_type(trainer.weights, match_every_layer=True)
        terms = criterion(out, examples, torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(terms["total"], params, retain_graph=True, allow_unused=True)
        results.append((terms, grads))
    assert_same_terms_and_grads(*results, grad_rtol=1e-5)  # every segmentation term is there


def test_initial_choice_weights_only_the_initial_layers_choice(tmp_path):
    """``initial_choice`` scales the proposal-choice CE of layer 0 (the learned inputs' scores,
    the same for every prompt) and nothing else: at 0 those scores get no gradient and every
    choice term loses exactly its layer-0 share; mask terms are unchanged."""
    base = '{"num_points": 64, "match_points": 64'
    trainer, examples, requests = tiny_batch(tmp_path, base + "}")
    out = trainer.model(
        [ex.image for ex in examples], requests, generator=torch.Generator().manual_seed(0)
    )
    terms = {}
    for weight in (1.0, 0.5, 0.0):
        criterion = FindCriterion(
            LossWeights.from_dict({"num_points": 64, "match_points": 64, "initial_choice": weight}),
            match_every_layer=False,
        )
        terms[weight] = criterion(out, examples, torch.Generator().manual_seed(1))
    for name in ("grounding", "interactive", "interleave"):
        full, half, none = (terms[w][f"{name}_ce"].detach() for w in (1.0, 0.5, 0.0))
        assert float(full) > float(none) > 0  # the initial layer had a share; the others stay
        torch.testing.assert_close(half, (full + none) / 2)  # linear in the weight
        for part in ("bce", "dice"):
            torch.testing.assert_close(terms[0.0][f"{name}_{part}"], terms[1.0][f"{name}_{part}"])
    torch.testing.assert_close(terms[0.0]["class_ce"], terms[1.0]["class_ce"])
    initial = out.grounded_segmentation.layers[0].logits
    final = out.grounded_segmentation.layers[-1].logits
    g0, g1 = torch.autograd.grad(terms[0.0]["grounding_ce"], (initial, final))
    assert float(g0.abs().sum()) == 0.0 and float(g1.abs().sum()) > 0
