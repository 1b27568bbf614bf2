"""Keep every test out of ``~`` and off the network; the builders shared by every test folder.

The builders are fixtures that return plain functions (factories), so a test asks for what it
builds by name: ``images``, ``point`` and ``all_requests`` (model inputs), ``tiny_model`` (an
untrained ``find_tiny``), ``tiny_run`` (the same saved as a run directory), ``tiny_world`` (a
synthetic split), ``tiny_hf`` (tiny random Hugging Face checkpoints, from
``tests/tiny_checkpoints.py``) and ``cli_env`` (the environment of a ``python -m findvl``
child). Folders add their own in their ``conftest.py``.
"""

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

_TMP = tempfile.mkdtemp(prefix="findvl-tests-")
for var, sub in (
    ("HF_HOME", "hf"),
    ("MPLCONFIGDIR", "mpl"),
    ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
    ("GRADIO_TEMP_DIR", "gradio"),
):
    os.environ.setdefault(var, os.path.join(_TMP, sub))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# one intra-op thread unless asked otherwise: tiny models gain nothing from more, and on a
# shared machine extra threads only wait for each other (set before torch is first imported)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cli_env() -> dict[str, str]:
    """The environment of a ``python -m findvl`` child: these sources first, one thread."""
    import findvl

    src = str(Path(findvl.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": src + (os.pathsep + path if path else ""),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _images(sizes, seed=0):
    """Random ``[3,H,W]`` uint8 images of the given ``(H, W)`` sizes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]


def _point(size, x, y, radius=2):
    """A point visual prompt at ``(x, y)`` on an image of ``size`` ``(H, W)``."""
    from findvl.model.requests import VisualPrompt
    from findvl.model.sampler import rasterize

    return VisualPrompt(rasterize(size, points=[(x, y)], radius=radius))


def _all_requests(imgs, *, previous=False, reference_image=None):
    """One request of every task for ``imgs`` (sizes taken from the images)."""
    import torch

    from findvl.model.requests import (
        Entity,
        GenericSegmentation,
        GroundedSegmentation,
        ImageTextRetrieval,
        InteractiveSegmentation,
        InterleavedText,
        InterleaveRetrieval,
        InterleaveSegmentation,
        VisualReference,
    )

    sizes = [tuple(i.shape[-2:]) for i in imgs]
    prompts = [
        [_point(s, 5 + j * 7, 6 + j * 3) for j in range(1 + b % 2)] for b, s in enumerate(sizes)
    ]
    texts = []
    for s in sizes:
        ref_size = tuple(reference_image.shape[-2:]) if reference_image is not None else s
        ref = VisualReference(reference_image, _point(ref_size, 9, 9))
        texts.append(
            InterleavedText(
                "a red circle next to a blue square", [Entity(0, 12, ref), Entity(21, 34)]
            )
        )
    return [
        GenericSegmentation(["red circle", "blue square", "grass"]),
        GroundedSegmentation([["the red circle"] + ["a square"] * b for b in range(len(imgs))]),
        InteractiveSegmentation(
            prompts, previous=[torch.randn(s) for s in sizes] if previous else None
        ),
        ImageTextRetrieval([f"caption number {b}" for b in range(len(imgs))]),
        InterleaveSegmentation(texts),
        InterleaveRetrieval(texts),
    ]


def _tiny_world(root: Path, images: int = 4, *, split: str = "val", seed: int = 1) -> Path:
    """A synthetic split of ``images`` 64-px images written under ``root``."""
    from findvl.data.synth.write import SynthConfig, write_synth

    config = SynthConfig(out=root, images=images, seed=seed, size=64, split=split)
    write_synth(config, progress=False)
    return root


def _tiny_model():
    """An untrained ``find_tiny`` model in eval mode (weights seeded by 0)."""
    import torch

    from findvl.build import build_model, find_tiny_config

    torch.manual_seed(0)
    return build_model(find_tiny_config()).eval()


def _tiny_run(root: Path, seed: int = 0, classes: list[str] | None = None) -> Path:
    """An untrained ``find_tiny`` checkpoint saved as a run directory (as training writes it),
    with a vocabulary of ``classes`` (all things) when given."""
    import json

    import torch

    from findvl.build import build_model
    from findvl.train.checkpoint import save_checkpoint
    from findvl.train.config import train_config

    torch.manual_seed(seed)
    config = train_config("find_tiny", [], steps=1, batch_size=1, seed=seed)
    saved = {"train": json.loads(config.to_json())}
    if classes is not None:
        saved["vocabulary"] = {"names": list(classes), "isthing": [True] * len(classes)}
    model = build_model(config.model)
    vocabulary = saved.get("vocabulary")
    save_checkpoint(
        root, step=0, model=model, config=saved, model_config=config.model, vocabulary=vocabulary
    )
    return root


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """The environment of a ``python -m findvl`` subprocess (this checkout's sources, 1 thread)."""
    return _cli_env()


@pytest.fixture(scope="session")
def images():
    """``images(sizes, seed=0)``: random uint8 images."""
    return _images


@pytest.fixture(scope="session")
def point():
    """``point(size, x, y, radius=2)``: a point visual prompt."""
    return _point


@pytest.fixture(scope="session")
def all_requests():
    """``all_requests(imgs, *, previous=False, reference_image=None)``: one request per task."""
    return _all_requests


@pytest.fixture(scope="session")
def tiny_world():
    """``tiny_world(root, images=4, *, split="val", seed=1)``: write a synthetic split."""
    return _tiny_world


@pytest.fixture(scope="session")
def tiny_model():
    """``tiny_model()``: a fresh untrained ``find_tiny`` model."""
    return _tiny_model


@pytest.fixture(scope="session")
def tiny_run():
    """``tiny_run(root, seed=0, classes=None)``: an untrained ``find_tiny`` run directory."""
    return _tiny_run


@pytest.fixture(scope="session")
def tiny_hf():
    """Writers of tiny random Hugging Face checkpoints: ``tiny_hf.llama(directory)`` etc."""
    import tiny_checkpoints as t

    return SimpleNamespace(
        llama=t.write_tiny_llama,
        clip=t.write_tiny_clip,
        clip_vision=t.write_tiny_clip_vision,
        dinov2=t.write_tiny_dinov2,
        sam=t.write_tiny_sam,
        sam_vision=t.write_tiny_sam_vision,
    )
