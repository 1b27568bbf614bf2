"""Released-weight conventions vs findvl's own: point sampling, per-level draws, class prompts,
grounding cap; and which presets use which."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from findvl.build import build_model, preset_config
from findvl.config import ConventionsConfig
from findvl.model.conventions import OFFICIAL, check_conventions, class_text
from findvl.model.requests import GroundedSegmentation, ImageTextRetrieval, VisualPrompt
from findvl.model.sampler import level_points, prompt_points, sample_tokens
from findvl.released import OFFICIAL_CONFIGS, RELEASED_PRESETS


def _points(convention: str, **kwargs):
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[0, 0] = region[7, 7] = True
    return prompt_points(
        [[VisualPrompt(region)]],
        image_sizes=[(8, 8)],
        input_sizes=[(8, 8)],
        canvas=kwargs.get("canvas", (8, 8)),
        max_points=16,
        convention=convention,
    )


def test_official_points_are_pixel_corners_over_the_canvas() -> None:
    assert _points("official").coords[0].tolist() == [[0.0, 0.0], [7 / 8, 7 / 8]]
    assert _points("center").coords[0].tolist() == [[1 / 16, 1 / 16], [15 / 16, 15 / 16]]
    # padding: the canvas is larger than the image, the point keeps its place on the image
    assert _points("official", canvas=(16, 16)).coords[0, 1].tolist() == [7 / 16, 7 / 16]
    with pytest.raises(ValueError, match="point convention 'corner'"):
        _points("corner")


def test_official_sampling_uses_align_corners_true() -> None:
    feature = torch.arange(16.0).reshape(1, 1, 4, 4)
    corners = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    # align_corners=True: 0 and 1 are the centres of the first and last cells
    assert sample_tokens(feature, corners, "official")[0, :, 0].tolist() == [0.0, 15.0]
    centre = torch.tensor([[[0.125, 0.125]]])  # centre of cell (0, 0) in the findvl convention
    assert sample_tokens(feature, centre, "center")[0, 0, 0].item() == 0.0


def test_per_level_draws_are_independent_with_the_same_counts() -> None:
    region = torch.ones(16, 16, dtype=torch.bool)
    prompts = [[VisualPrompt(region), VisualPrompt(region.clone())]]
    kwargs = dict(image_sizes=[(16, 16)], input_sizes=[(16, 16)], canvas=(16, 16), max_points=20)
    gen = torch.Generator().manual_seed(0)
    per = level_points(prompts, num_levels=3, per_level=True, generator=gen, **kwargs)
    assert len({tuple(p.coords.flatten().tolist()) for p in per}) == 3  # three different draws
    for p in per:
        assert torch.equal(p.ids, per[0].ids) and torch.equal(p.valid, per[0].valid)
        assert p.valid.sum() == 20  # 10 points from each region
    shared = level_points(prompts, num_levels=3, per_level=False, generator=gen, **kwargs)
    assert shared[0] is shared[1] is shared[2]


def test_class_prompts() -> None:
    assert class_text("wall-other-merged", "describe") == "Describe the concept of wall."
    assert class_text("door-stuff", "describe") == "Describe the concept of door."
    assert class_text("background", "describe") == "Describe the concept of background."
    assert class_text("wall-other-merged", "name") == "wall-other-merged"


def test_bad_conventions_are_named() -> None:
    with pytest.raises(ValueError, match="conventions.class_prompt='long'"):
        check_conventions(ConventionsConfig(class_prompt="long"))
    with pytest.raises(ValueError, match="conventions.grounding_scale_cap=0"):
        check_conventions(ConventionsConfig(grounding_scale_cap=0))


def test_findvl_presets_keep_their_conventions_released_ones_are_official() -> None:
    for name in ("find_tiny", "find_synth_vit"):
        assert preset_config(name).conventions == ConventionsConfig()
    # the quickstart's class embeddings are the projected names and its prompts' masks are
    # chosen with the click agreement; every other convention findvl's
    assert preset_config("find_synth").conventions == ConventionsConfig(
        class_table="text", click_agreement=30.0
    )
    assert OFFICIAL.click_agreement == 0  # the released weights: FIND's score alone
    assert len(OFFICIAL_CONFIGS) == 10 and set(OFFICIAL_CONFIGS.values()) == set(RELEASED_PRESETS)
    for name in RELEASED_PRESETS:
        cfg = preset_config(name)
        assert cfg.conventions == OFFICIAL
        assert cfg.vision.kind == "official" and cfg.vision.backbone in name
        assert (cfg.interface.hidden_dim, cfg.interface.num_layers) == (512, 9)
    assert preset_config("find_focalt").language.layer == -12
    assert preset_config("find_focalt_unicl").language.kind == "unicl"


def test_grounding_scale_cap_and_class_prompt_in_the_model() -> None:
    torch.manual_seed(0)
    config = preset_config("find_tiny")
    model = build_model(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(400.0)))
    image = [torch.rand(3, 64, 64) * 255]
    request = [GroundedSegmentation([["a red circle"]])]
    with torch.no_grad():
        free = model(image, request).grounded_segmentation.layers[-1].logits
        model.conventions = dataclasses.replace(model.conventions, grounding_scale_cap=100.0)
        capped = model(image, request).grounded_segmentation.layers[-1].logits
        torch.testing.assert_close(capped, free / 4)
        bare = model.class_embeddings(["wall-other-merged"])
        model.conventions = dataclasses.replace(model.conventions, class_prompt="describe")
        described = model.class_embeddings(["wall-other-merged"])
        model.conventions = dataclasses.replace(model.conventions, class_prompt="name")
        assert torch.equal(model.class_embeddings(["wall-other-merged"]), bare)
        assert not torch.allclose(bare, described)


def test_image_query_pooled_or_attended() -> None:
    """FIND's image embedding pools the object proposals; "attended" keeps the image query's
    own output, which reads the image by content attention (and no longer follows the
    proposals)."""
    torch.manual_seed(0)
    config = preset_config("find_tiny")
    pooled = build_model(config).eval()
    config.conventions = dataclasses.replace(config.conventions, image_query="attended")
    attended = build_model(config).eval()
    attended.load_state_dict(pooled.state_dict())  # same weights, one convention apart
    images = [torch.rand(3, 64, 64) * 255, torch.rand(3, 64, 64) * 255]
    request = [ImageTextRetrieval(["a red circle", "two squares"])]
    with torch.no_grad():
        a = pooled(images, request).image_text_retrieval.layers[-1]
        b = attended(images, request).image_text_retrieval.layers[-1]
        # the caption side is the same; the image side is the query's own, per image
        torch.testing.assert_close(a.query, b.query)
        assert not torch.allclose(a.image, b.image, atol=1e-3)
        assert not torch.allclose(b.image[0], b.image[1], atol=1e-4)
        # pooled: a mix of the proposals' semantic embeddings (inside their convex hull)
        objects = a.objects
        assert objects is not None
        low, high = objects.min(1).values, objects.max(1).values
        assert bool(((a.image >= low - 1e-5) & (a.image <= high + 1e-5)).all())
    with pytest.raises(ValueError, match="conventions.image_query='mean'"):
        check_conventions(ConventionsConfig(image_query="mean"))
    with pytest.raises(ValueError, match="conventions.grounding_query='phrase'"):
        check_conventions(ConventionsConfig(grounding_query="phrase"))
    config.conventions = dataclasses.replace(config.conventions, image_query="mean")
    with pytest.raises(ValueError, match="conventions.image_query='mean'"):
        build_model(config)


def test_grounding_query_text_scores_the_phrases_end_of_text_tokens() -> None:
    """``grounding_query="text"``: a phrase's scores read its projected end-of-text token, so
    two phrases differ from the start; the proposals and their masks are the interface's."""
    torch.manual_seed(0)
    config = preset_config("find_tiny")
    config.conventions = dataclasses.replace(config.conventions, grounding_query="text")
    model = build_model(config).eval()
    image = [torch.rand(3, 64, 64) * 255, torch.rand(3, 64, 64) * 255]
    phrases = [["a red circle", "the blue square left of the star"], ["two crosses"]]
    with torch.no_grad():
        out = model(image, [GroundedSegmentation(phrases)]).grounded_segmentation
        text = model.encode_text([p for row in phrases for p in row])
        last = text.features[torch.arange(3), text.mask.sum(1) - 1]
        torch.testing.assert_close(out.queries[0, :2], last[:2])
        torch.testing.assert_close(out.queries[1, 0], last[2])
        assert not out.valid[1, 1] and bool((out.queries[1, 1] == 0).all())
        for layer in out.layers:  # every layer scores the phrases against its proposals
            assert layer.logits.shape == (2, 2, 16)
        alone = model(image[:1], [GroundedSegmentation(phrases[:1])]).grounded_segmentation
        torch.testing.assert_close(alone.layers[-1].logits[0], out.layers[-1].logits[0])
        assert not torch.allclose(out.layers[-1].logits[0, 0], out.layers[-1].logits[0, 1])
    config.interface.dim_proj = 32
    with pytest.raises(ValueError, match="conventions.grounding_query='text'"):
        config.validate()
