"""Exact inference caches: the interface's image side per image, class tables per vocabulary,
separately encoded images stacked into one forward."""

import dataclasses

import pytest
import torch

from findvl.build import build_model, build_preset, preset_config
from findvl.model.image_cache import (
    ClassTableCache,
    stack_caches,
    stack_features,
    weights_version,
)
from findvl.model.outputs import ProposalScores
from findvl.model.requests import GenericSegmentation, GroundedSegmentation
from findvl.model.tasks.generic_segmentation import _class_pass
from findvl.train.optim import OptimizerConfig, build_optimizer

CLASSES = ["red circle", "blue square", "grass"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_preset("find_tiny").eval()


def _outputs(out):
    t = {
        "generic.logits": out.generic_segmentation.final.logits,
        "generic.masks": out.generic_segmentation.final.masks,
    }
    for name in ("grounded_segmentation", "interactive_segmentation", "interleave_segmentation"):
        t[f"{name}.logits"] = getattr(out, name).final.logits
        t[f"{name}.masks"] = getattr(out, name).final.masks
    for name in ("image_text_retrieval", "interleave_retrieval"):
        t[f"{name}.image"] = getattr(out, name).final.image
        t[f"{name}.query"] = getattr(out, name).final.query
    return t


@pytest.mark.parametrize("block_sparse", [True, False])
def test_cached_image_side_equals_the_plain_forward(model, images, all_requests, block_sparse):
    model.interface.block_sparse = block_sparse
    imgs = images([(64, 64), (64, 64)], seed=3)
    with torch.no_grad():
        feats = model.encode_images(imgs)
        plain = _outputs(model(feats, all_requests(imgs)))
        cache = model.cache_image(feats)
        assert model.interface.usable_cache(cache) is not None
        cached = _outputs(model(feats, all_requests(imgs), image_cache=cache))
    for key, value in plain.items():
        torch.testing.assert_close(cached[key], value, atol=1e-5, rtol=0, msg=key)


def test_the_image_cache_is_really_used(model, images):
    imgs = images([(64, 64)], seed=1)
    request = [GroundedSegmentation([["the red circle"]])]
    with torch.no_grad():
        feats = model.encode_images(imgs)
        cache = model.cache_image(feats)
        ref = model(feats, request, image_cache=cache).grounded_segmentation.final.logits
        k, v = cache.kv[0]
        cache.kv[0] = (torch.zeros_like(k), v)
        broken = model(feats, request, image_cache=cache).grounded_segmentation.final.logits
    assert not torch.allclose(ref, broken)
    with torch.no_grad(), pytest.raises(ValueError, match="image_cache"):
        model(model.encode_images(images([(64, 96)], seed=1)), request, image_cache=cache)


def test_a_stale_or_training_image_cache_is_ignored(model, images):
    imgs = images([(64, 64)], seed=2)
    request = [GroundedSegmentation([["the red circle", "a square"]])]
    with torch.no_grad():
        feats = model.encode_images(imgs)
        cache = model.cache_image(feats)
        model.interface.content_attention[0].multihead_attn.in_proj_weight.mul_(1.5)
        assert model.interface.usable_cache(cache) is None
        fresh = model(feats, request).grounded_segmentation.final.logits
        stale = model(feats, request, image_cache=cache).grounded_segmentation.final.logits
    torch.testing.assert_close(stale, fresh, atol=0, rtol=0)
    with torch.no_grad():
        feats = model.encode_images(imgs)
        cache = model.cache_image(feats)
        assert model.interface.usable_cache(cache) is not None
    weight = model.interface.content_attention[0].multihead_attn.in_proj_weight
    grads = []
    for c in (cache, None):  # grad enabled: the cache is not used
        model.zero_grad()
        model(feats, request, image_cache=c).grounded_segmentation.final.logits.sum().backward()
        grads.append(weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)


def test_class_table_cached_per_vocabulary_and_exact(model):
    with torch.no_grad():
        first = model.class_embeddings(CLASSES)
        again = model.class_embeddings(CLASSES)
        other = model.class_embeddings(["grass"])
        ref = _class_pass(model, [*CLASSES, "background"])
    assert again is first and model.class_tables.misses == 2
    assert other.shape[0] == 2
    torch.testing.assert_close(first, ref, atol=1e-5, rtol=0)


def test_generic_forward_reuses_the_table(model, images):
    imgs = images([(64, 64)], seed=4)
    with torch.no_grad():
        a = model(imgs, [GenericSegmentation(CLASSES)]).generic_segmentation
        b = model(imgs, [GenericSegmentation(CLASSES)]).generic_segmentation
    assert model.class_tables.misses == 1
    torch.testing.assert_close(a.final.logits, b.final.logits, atol=0, rtol=0)
    with torch.enable_grad():  # training forwards never read the cache
        model(imgs, [GenericSegmentation(CLASSES)])
    assert model.class_tables.misses == 1


def test_a_training_step_invalidates_the_class_table(model, images):
    with torch.no_grad():
        before = model.class_embeddings(CLASSES).clone()
    imgs = images([(64, 64)], seed=5)
    model.train()
    optim = build_optimizer(model, OptimizerConfig(lr=1e-2))  # the trainer's (fused) AdamW
    logits = model(imgs, [GenericSegmentation(CLASSES)]).generic_segmentation.final.logits
    logits.log_softmax(-1)[..., 0].mean().neg().backward()
    optim.step()
    model.eval()
    with torch.no_grad():
        after = model.class_embeddings(CLASSES)
        ref = _class_pass(model, [*CLASSES, "background"])
    assert model.class_tables.misses == 2
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, ref, atol=1e-5, rtol=0)
    # loading other weights invalidates it too
    torch.manual_seed(1)
    model.load_state_dict(build_preset("find_tiny").state_dict())
    with torch.no_grad():
        model.class_embeddings(CLASSES)
    assert model.class_tables.misses == 3


def test_weights_version_and_cache_limits():
    layer = torch.nn.Linear(2, 2)
    v0 = weights_version(layer)
    assert weights_version(layer) == v0
    with torch.no_grad():
        layer.weight.add_(1)
    assert weights_version(layer) != v0
    cache = ClassTableCache(limit=1)
    cache.get(("a",), v0, lambda: torch.zeros(1))
    cache.get(("b",), v0, lambda: torch.zeros(1))
    assert len(cache) == 1
    cache.get(("c",), None, lambda: torch.zeros(1))  # no version: never stored
    assert len(cache) == 1 and cache.misses == 3
    import copy

    assert len(copy.deepcopy(cache)) == 0


def test_stacked_images_equal_one_forward_each(model, images, all_requests):
    """Images of different sizes, encoded one by one, padded into one forward."""
    imgs = images([(64, 64), (40, 56), (64, 32)], seed=6)
    with torch.no_grad():
        feats = [model.encode_images([im]) for im in imgs]
        caches = [model.cache_image(f) for f in feats]
        stacked = stack_features(feats)
        assert stack_caches([caches[0], None, caches[2]], feats) is None
        for cache in (stack_caches(caches, feats), None):
            req = all_requests(imgs)
            batched = model(stacked, req[:3], image_cache=cache)
            for b, f in enumerate(feats):
                one = all_requests([imgs[b]])[:3]
                one[1].phrases = [req[1].phrases[b]]
                one[2].prompts = [req[2].prompts[b]]
                single = model(f, one)
                h, w = f.pixel.mask_features.shape[-2:]
                for name in (
                    "generic_segmentation",
                    "grounded_segmentation",
                    "interactive_segmentation",
                ):
                    s, t = getattr(single, name).final, getattr(batched, name).final
                    n = s.logits.shape[1]
                    torch.testing.assert_close(
                        t.logits[b : b + 1, :n], s.logits, atol=1e-5, rtol=0, msg=name
                    )
                    torch.testing.assert_close(
                        t.masks[b : b + 1, :, :h, :w], s.masks, atol=1e-5, rtol=0, msg=name
                    )


def test_full_resolution_masks_only_where_asked(model, images):
    imgs = images([(64, 64)], seed=8)
    request = [GroundedSegmentation([["the red circle"]])]
    with torch.no_grad():
        inference = model(imgs, request).grounded_segmentation
        supervised = model(imgs, request, all_layer_masks=True).grounded_segmentation
    assert all(layer.masks is None for layer in inference.layers[:-1])
    assert all(layer.masks is not None for layer in supervised.layers)
    torch.testing.assert_close(inference.final.masks, supervised.final.masks, atol=0, rtol=0)


def test_masks_from_their_factors_equal_the_dense_ones(images, all_requests):
    """A forward that keeps the masks' factors (as the predictor runs) forms no mask logits,
    and every mask read from it equals the dense forward's; the click agreement, which needs
    the final masks, adds the same scores."""
    config = preset_config("find_tiny")
    config = dataclasses.replace(
        config, conventions=dataclasses.replace(config.conventions, click_agreement=5.0)
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    imgs = images([(64, 64), (48, 64)], seed=9)
    reqs = all_requests(imgs)
    with torch.no_grad():
        dense = model(imgs, reqs, generator=torch.Generator().manual_seed(0))
        lazy = model(imgs, reqs, generator=torch.Generator().manual_seed(0), dense_masks=False)
    for name in ("generic_segmentation", "grounded_segmentation", "interactive_segmentation"):
        d, f = getattr(dense, name).final, getattr(lazy, name).final
        assert f.masks is None and d.masks is not None, name
        torch.testing.assert_close(f.logits, d.logits, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(f.dense(), d.masks, atol=1e-5, rtol=0, msg=name)
        index = torch.tensor([[2, 0], [1, 1]])
        torch.testing.assert_close(f.masks_of(index), d.masks_of(index), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            f.image_masks(1, torch.tensor([3, 0])), d.masks[1, [3, 0]], atol=1e-5, rtol=0
        )
    for name in ("grounded_segmentation", "interactive_segmentation"):
        torch.testing.assert_close(
            getattr(lazy, name).best_masks(), getattr(dense, name).best_masks(), atol=1e-5, rtol=0
        )
    empty = ProposalScores(None, torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="neither masks nor their factors"):
        empty.dense()


def test_take_positions_views_runs_and_copies_the_rest():
    from findvl.layers import take_positions

    a, b = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 2, 4)
    whole = torch.cat([a, b], 2)
    for index in ([1, 2, 3], [5, 6], [3, 4, 5], [0, 2], [4, 1], list(range(7))):
        idx = torch.tensor(index)
        torch.testing.assert_close(take_positions([a, b], idx), whole.index_select(2, idx))
    view = take_positions([a, b], torch.tensor([1, 2, 3]))
    assert view.data_ptr() == a[:, :, 1].data_ptr()  # no copy
