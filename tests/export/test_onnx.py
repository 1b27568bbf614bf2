"""ONNX graphs: the graphs equal the model's own forward; onnxruntime equals PyTorch."""

import pytest
import torch

from findvl import cli
from findvl.build import build_preset
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


@pytest.mark.slow
@pytest.mark.parametrize("task", EXPORT_TASKS)
def test_onnxruntime_equals_pytorch(model, image, task, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(model, task, tmp_path / f"{task}.onnx", size=SIZE, prompts=2)
    graph, inputs, names = export_graph(model, task, size=SIZE, prompts=2)
    inputs = (_pixels(model, image), *inputs[1:])
    with torch.no_grad():
        ref = graph(*inputs)
    session = ort.InferenceSession(str(path))
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
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out
    assert cli.main([*argv[:-5], "--out", str(out), "--size", "60", "64"]) == 2
    assert "multiples of" in capsys.readouterr().err
