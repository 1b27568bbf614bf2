"""evaluate_run end to end on a tiny synthetic split with an untrained tiny model."""

from __future__ import annotations

import math

import pytest

from findvl.evaluation.runner import evaluate_run

PERCENT_KEYS = {
    "panoptic": ("PQ", "SQ", "RQ", "PQ_things", "PQ_stuff"),
    "instance": ("AP", "AP50", "AP75"),
    "semantic": ("mIoU",),
    "grounding": ("cIoU", "mIoU", "P@0.5"),
    "interactive": ("mIoU@1", "mIoU@3"),
    "retrieval": ("IR@1", "IR@5", "IR@10", "TR@1", "TR@5", "TR@10"),
    "interleave_segmentation": ("cIoU", "mIoU", "P@0.5"),
    "interleave_retrieval": ("IR@1", "IR@5", "IR@10"),
    "interleave_retrieval_legend": ("IR@1", "IR@5", "IR@10"),
    "interleave_grounding_long": ("cIoU", "mIoU", "P@0.5"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_world):
    return tiny_world(tmp_path_factory.mktemp("world"))


def _run(model, root, out_dir=None, seed=0):
    return evaluate_run(
        model,
        None,
        None,
        root,
        "val",
        seed=seed,
        batch_size=3,
        interactive_objects=1,
        max_clicks=3,
        out_dir=out_dir,
        progress=False,
        threads=1,
    )


@pytest.fixture(scope="module")
def results(world, tmp_path_factory, tiny_model):
    model = tiny_model()
    out = tmp_path_factory.mktemp("out")
    return _run(model, world, out), _run(model, world), out


def test_every_key_present_and_in_range(results):
    result, _, _ = results
    for section, keys in PERCENT_KEYS.items():
        for key in keys:
            value = result[section][key]
            assert value is not None and 0.0 <= value <= 100.0, (section, key, value)
    for key in ("NoC@85", "NoC@90"):
        assert 1.0 <= result["interactive"][key] <= 3.0
    for name in ("text_only", "embedding_average"):
        for key in ("IR@1", "IR@5", "IR@10"):
            assert 0.0 <= result["baselines"][name][key] <= 100.0
    assert result["retrieval"]["num_images"] == 4
    assert result["interactive"]["num_objects"] == 4
    assert result["grounding"]["num_entities"] > 0
    assert result["interleave_retrieval"]["num_queries"] > 0


def test_things_and_stuff_are_scored_apart(results):
    result, _, _ = results
    for section in ("grounding", "interleave_segmentation", "interleave_grounding_long"):
        parts = [result[section][p] for p in ("things", "stuff") if p in result[section]]
        assert parts, section
        assert sum(p["num_entities"] for p in parts) == result[section]["num_entities"]
        assert all(0.0 <= p["cIoU"] <= 100.0 for p in parts)
    parts = [result["interactive"][p] for p in ("things", "stuff") if p in result["interactive"]]
    assert sum(p["num_objects"] for p in parts) == result["interactive"]["num_objects"]


def test_deterministic(results):
    first, second, _ = results
    assert first == second


def test_prediction_files_reproduce_the_numbers(results):
    from findvl.metrics.grounding import evaluate_grounding
    from findvl.metrics.retrieval import evaluate_retrieval

    result, _, out = results
    refs = evaluate_grounding(out / "grounding_gt.json", out / "grounding_pred.json")
    assert math.isclose(refs.cIoU, result["grounding"]["cIoU"])
    recall = evaluate_retrieval(out / "retrieval_scores.npz", out / "retrieval_gt.json").recall
    assert recall["IR@5"] == result["retrieval"]["IR@5"]
    assert (out / "generic" / "panoptic_pred.json").is_file()


def test_unknown_task_is_rejected(world, tiny_model):
    with pytest.raises(ValueError, match="tasks: unknown task 'nope'"):
        evaluate_run(tiny_model(), None, None, world, "val", tasks=("nope",), progress=False)


def test_paper_variant_evaluates_interleave_retrieval_on_its_image_embeddings(world):
    """Table 1's interleave retrieval has no object proposals: the interleave score compares
    the entities with each image's own embedding, as an index without objects does."""
    import dataclasses

    import torch

    from findvl.build import build_model, find_tiny_config
    from findvl.predictor import FindPredictor

    config = find_tiny_config()
    config = dataclasses.replace(
        config, interface=dataclasses.replace(config.interface, variant="paper")
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    got = evaluate_run(
        model,
        None,
        None,
        world,
        "val",
        tasks=("interleave",),
        batch_size=3,
        progress=False,
        threads=1,
    )
    for key in ("IR@1", "IR@5", "IR@10"):
        assert 0.0 <= got["interleave_retrieval"][key] <= 100.0
    predictor = FindPredictor(model)
    predictor.set_image(torch.zeros(3, 32, 32, dtype=torch.uint8))
    objects = predictor.embed_objects()
    assert objects.shape == (1, config.interface.dim_proj)
    torch.testing.assert_close(objects[0], predictor.embed_image())
