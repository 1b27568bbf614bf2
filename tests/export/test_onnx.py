"""ONNX graphs: the graphs equal the model's own forward; onnxruntime equals PyTorch."""

import pytest
import torch

from findvl import cli
from findvl.build import build_preset
from findvl.encoders import pixel_decoder
from findvl.export import EXPORT_TASKS, export_graph, export_onnx
from findvl.model.requests import (
    GenericSegmentation,
    GroundedSegmentation,
    InteractiveSegmentation,
    VisualPrompt,
)
from findvl.model.sampler import rasterize

SIZE = (64, 64)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_preset("find_tiny").eval()


@pytest.fixture(scope="module")
def image(images):
    return images([SIZE], seed=11)[0]


def _pixels(model, image):
    return model.encode_images([image]).batch.pixels


def test_generic_graph_equals_the_forward(model, image):
    classes = ["red circle", "blue square"]
    graph, _, _ = export_graph(model, "generic", size=SIZE, prompts=2)
    with torch.no_grad():
        ref = model([image], [GenericSegmentation(classes)]).generic_segmentation.final
        masks, logits = graph(_pixels(model, image), model.class_embeddings(classes))
    torch.testing.assert_close(masks, ref.masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=0)


def test_grounding_graph_equals_the_forward(model, image):
    phrases = ["the red circle", "a much longer phrase about a square"]
    graph, _, _ = export_graph(model, "grounding", size=SIZE, prompts=2)
    with torch.no_grad():
        ref = model([image], [GroundedSegmentation([phrases])]).grounded_segmentation.final
        text = model.encode_text(phrases)
        masks, logits = graph(_pixels(model, image), text.features, text.mask)
    torch.testing.assert_close(masks, ref.masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=0)


def test_interactive_graph_equals_the_forward(model, image):
    prompt = VisualPrompt(rasterize(SIZE, points=[(20, 30)], radius=0))
    graph, _, _ = export_graph(model, "interactive", size=SIZE, prompts=1)
    with torch.no_grad():
        out = model([image], [InteractiveSegmentation([[prompt]])])
        ref = out.interactive_segmentation.final
        points = torch.tensor([[[20.5 / SIZE[1], 30.5 / SIZE[0]]]])  # pixel centre, canvas
        masks, logits = graph(_pixels(model, image), points, torch.zeros(1, 1, dtype=torch.bool))
    torch.testing.assert_close(masks, ref.masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=0)


def test_bad_task_and_bad_cli_input(model, tmp_path, capsys):
    with pytest.raises(ValueError, match="task"):
        export_graph(model, "retrieval", size=SIZE)
    code = cli.main(
        [
            "export",
            "onnx",
            "--checkpoint",
            str(tmp_path / "missing"),
            "--task",
            "generic",
            "--out",
            str(tmp_path / "g.onnx"),
        ]
    )
    assert code == 2 and "--checkpoint" in capsys.readouterr().err


def test_valid_pooling_by_reshape_equals_adaptive_pooling():
    """The pixel decoder pools valid regions by reshape where the cells divide the canvas (the
    form the exporter keeps symbolic): the same as adaptive max pooling."""
    g = torch.Generator().manual_seed(0)
    valid = torch.rand(2, 96, 128, generator=g) > 0.9
    for size in ((3, 4), (6, 8), (24, 32), (96, 128), (5, 7)):
        expected = torch.nn.functional.adaptive_max_pool2d(valid[:, None].float(), size)[:, 0] > 0
        assert torch.equal(pixel_decoder.downsample_valid(valid, size), expected)


def _example_inputs(model, task: str, size: tuple[int, int], count: int, seed: int):
    """Inputs of ``task``'s graph on a random canvas ``size`` with ``count`` prompts."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(1, 3, *size, generator=g)
    with torch.no_grad():
        if task == "generic":
            return pixels, model.class_embeddings([f"class {i}" for i in range(count)])
        if task == "grounding":  # phrases of different lengths: the token dimension changes
            words = ["red", "circle", "left", "of", "the", "blue", "square", "big"]
            text = model.encode_text([" ".join(words[: 2 + 3 * i + seed]) for i in range(count)])
            return pixels, text.features, text.mask
    points = torch.rand(1, count, 2, generator=g)
    return pixels, points, torch.arange(count)[None] % 2 == 1


@pytest.mark.slow
@pytest.mark.parametrize("task", EXPORT_TASKS)
def test_one_dynamic_graph_equals_pytorch_at_two_sizes_and_counts(model, task, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(model, task, tmp_path / f"{task}.onnx", size=SIZE, prompts=2)
    graph, _, names = export_graph(model, task, size=SIZE, prompts=2)
    session = ort.InferenceSession(str(path))
    shapes = set()
    for size, count, seed in (((64, 64), 2, 0), ((96, 128), 3, 1), ((64, 96), 1, 2)):
        inputs = _example_inputs(model, task, size, count, seed)
        with torch.no_grad():
            ref = graph(*inputs)
        got = session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})
        for a, b in zip(got, ref):
            torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=0)
        shapes.add(tuple(tuple(x.shape) for x in (*inputs, *ref)))
    assert len(shapes) == 3  # each run changed the dynamic dimensions (1: fixed when traced)


@pytest.mark.slow
def test_static_graph_keeps_its_shapes(model, image, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(model, "generic", tmp_path / "g.onnx", size=SIZE, prompts=2, dynamic=False)
    graph, inputs, names = export_graph(model, "generic", size=SIZE, prompts=2)
    inputs = (_pixels(model, image), *inputs[1:])
    session = ort.InferenceSession(str(path))
    assert [tuple(i.shape) for i in session.get_inputs()] == [tuple(x.shape) for x in inputs]
    with torch.no_grad():
        ref = graph(*inputs)
    got = session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})
    for a, b in zip(got, ref):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_cli_exports_a_run(tiny_run, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    run = tiny_run(tmp_path / "run")
    out = tmp_path / "ground.onnx"
    argv = ["export", "onnx", "--checkpoint", str(run), "--task", "grounding"]
    argv += ["--out", str(out), "--size", "64", "64", "--prompts", "2"]
    assert cli.main(argv) == 0
    assert out.stat().st_size > 0 and "any prompt count" in capsys.readouterr().out
    for size in (["60", "64"], ["32", "64"]):  # not a multiple; too small for a dynamic graph
        assert cli.main([*argv[:-5], "--out", str(tmp_path / "x.onnx"), "--size", *size]) == 2
        assert "multiples of 32, at least 64" in capsys.readouterr().err
