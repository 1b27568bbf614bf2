"""A live demo server over a tiny untrained model, for the gradio_client and browser tests."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

import pytest
import torch

from findvl.build import build_model, find_tiny_config
from findvl.demo.examples import synthesise_examples
from findvl.demo.service import DemoService
from findvl.predictor import FindPredictor

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CLASSES = ["circle", "square", "star"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_service(images: int = 4):
    torch.manual_seed(0)
    model = build_model(find_tiny_config()).eval()
    examples = synthesise_examples(count=images, size=64)
    service = DemoService(
        FindPredictor(model), list(CLASSES), [True] * len(CLASSES), gallery=examples.gallery
    )
    return service, examples


@contextmanager
def live_demo(max_file_size: str = "1mb"):
    """``(url, service, examples)`` of a server on a free port of 127.0.0.1, closed after."""
    from findvl.demo.server import serve

    service, examples = tiny_service()
    port = free_port()
    app = serve(
        service, examples, host="127.0.0.1", port=port, max_file_size=max_file_size, block=False
    )
    try:
        yield f"http://127.0.0.1:{port}/", service, examples
    finally:
        app.close()


def test_server_starts_on_a_free_port_and_stops():
    import urllib.request

    pytest.importorskip("gradio")
    with live_demo() as (url, _, _):
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and b"FIND demo" in page.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)


@pytest.mark.parametrize(
    ("flags", "field"),
    [(["--port", "0"], "--port"), (["--max-queue", "0"], "--max-queue"), ([], "checkpoint")],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, flags, field):
    from findvl.cli import main

    code = main(["demo", "--checkpoint", str(tmp_path / "missing"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err


def test_examples_come_with_their_phrases():
    service, examples = tiny_service(images=2)
    assert len(examples.images) == 2 and len(service.gallery) == 2
    name, path, rgb = examples.images[0]
    assert path.name == name and rgb.shape == (64, 64, 3) and examples.phrases[name]


def tiny_run_dir(root):
    """A find_tiny checkpoint with a vocabulary, as training saves it."""
    import json

    from findvl.train.checkpoint import save_checkpoint
    from findvl.train.config import train_config

    torch.manual_seed(0)
    config = train_config("find_tiny", [], steps=1, batch_size=1)
    saved = {
        "train": json.loads(config.to_json()),
        "vocabulary": {"names": list(CLASSES), "isthing": [True] * len(CLASSES)},
    }
    save_checkpoint(root, step=1, model=build_model(config.model), config=saved)
    return root


def test_make_service_from_a_run_and_a_dataset(tmp_path):
    from findvl.data.synth import SynthConfig, write_synth
    from findvl.demo.server import make_service

    run = tiny_run_dir(tmp_path / "run")
    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=3, seed=2, size=64, split="val"), progress=False)
    service, examples = make_service(run, data=data)
    assert service.class_names == CLASSES and len(examples.images) == 3
    assert [name for name, _ in service.gallery] == [name for name, _, _ in examples.images]


@pytest.mark.parametrize("flag", ["--data", "--index"])
def test_cli_missing_data_or_index_exit_2(tmp_path, capsys, flag):
    from findvl.cli import main

    run = tiny_run_dir(tmp_path / "run")
    code = main(["demo", "--checkpoint", str(run), flag, str(tmp_path / "nothing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err
