"""Builders of the demo tests: a service over a tiny untrained model and a live local server."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CLASSES = ["circle", "square", "star"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_service(images: int = 4):
    """``(service, examples)``: a :class:`DemoService` over an untrained ``find_tiny``."""
    import torch

    from findvl.build import build_model, find_tiny_config
    from findvl.demo.examples import synthesise_examples
    from findvl.demo.service import DemoService
    from findvl.predictor import FindPredictor

    torch.manual_seed(0)
    model = build_model(find_tiny_config()).eval()
    examples = synthesise_examples(count=images, size=64)
    service = DemoService(
        FindPredictor(model), list(CLASSES), [True] * len(CLASSES), gallery=examples.gallery
    )
    return service, examples


@contextmanager
def _live_demo(max_file_size: str = "1mb"):
    """``(url, service, examples)`` of a server on a free port of 127.0.0.1, closed after."""
    from findvl.demo.server import serve

    service, examples = _tiny_service()
    port = _free_port()
    app = serve(
        service, examples, host="127.0.0.1", port=port, max_file_size=max_file_size, block=False
    )
    try:
        yield f"http://127.0.0.1:{port}/", service, examples
    finally:
        app.close()


@pytest.fixture(scope="session")
def demo_classes() -> list[str]:
    """The class names of the tiny demo service."""
    return list(CLASSES)


@pytest.fixture(scope="session")
def tiny_service():
    """``tiny_service(images=4)``: ``(service, examples)`` without a server."""
    return _tiny_service


@pytest.fixture(scope="session")
def live_demo():
    """``with live_demo(max_file_size="1mb") as (url, service, examples)``: a live server."""
    return _live_demo
