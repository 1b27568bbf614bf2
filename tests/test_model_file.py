"""The model file: config.json + learned weights; frozen foundation models by path and hash."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from findvl.build import build_model, build_preset, load_model, save_model, shipped_path
from findvl.cli import main
from findvl.model_file import read_foundations, read_model_config
from findvl.runs import load_run

VOCAB = {"names": ["circle", "sky"], "isthing": [True, False]}


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key, value in sa.items():
        assert torch.equal(value, sb[key]), key


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    model = build_preset("find_synth", seed=3)
    with torch.no_grad():
        model.text_whiten.copy_(torch.randn_like(model.text_whiten))  # a calibrated buffer
    directory = save_model(
        model, model.config, tmp_path_factory.mktemp("m") / "m", vocabulary=VOCAB
    )
    return directory, model


def test_holds_learned_weights_and_references_the_frozen_encoders(synth_file) -> None:
    directory, model = synth_file
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json", "model.safetensors", "vocabulary.json"
    ]  # fmt: skip
    assert read_model_config(directory) == model.config
    assert (directory / "config.json").read_text() == model.config.to_json()
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= names and {"text_shift", "text_scale", "text_whiten"} <= names
    assert not any(n.startswith(("vision.backbone.", "language.")) for n in names)
    assert names == {
        k for k in model.state_dict() if not k.startswith(("vision.backbone.", "language."))
    }
    found = {f["field"]: f for f in read_foundations(directory)}
    assert found["vision.path"]["path"] == "findvl:resnet/synth-clip-vision"  # portable: by name
    assert found["language.path"]["path"] == "findvl:resnet/synth-clip-text"
    assert all(len(f["sha256"]) == 64 for f in found.values())


def test_load_model_rebuilds_the_same_model(synth_file) -> None:
    directory, model = synth_file
    loaded, config = load_model(directory)
    assert config == model.config
    _same_state(loaded, model)
    run = load_run(directory)  # a model file outside any run directory
    assert (run.class_names, run.isthing, run.run_config) == (VOCAB["names"], VOCAB["isthing"], {})
    _same_state(run.model, model)


def _altered_copy(name: str, target: Path) -> Path:
    """A copy of a shipped encoder with one weight changed."""
    shutil.copytree(shipped_path(name), target)
    weights = load_file(str(target / "model.safetensors"))
    key = sorted(weights)[0]
    weights[key] = weights[key] + 1e-3
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_other_frozen_weights_are_refused_naming_the_path(synth_file, tmp_path, capsys) -> None:
    directory, model = synth_file
    altered = _altered_copy("resnet/synth-clip-vision", tmp_path / "vision")
    config = dataclasses.replace(
        model.config, vision=dataclasses.replace(model.config.vision, path=str(altered))
    )
    with pytest.raises(ValueError, match=rf"vision\.path {altered}: its weights .* not the ones"):
        load_model(directory, config=config)
    unchanged = tmp_path / "same"
    shutil.copytree(shipped_path("resnet/synth-clip-vision"), unchanged)
    load_run(directory, vision_path=str(unchanged))  # a copy of the same weights is fine

    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    argv = ["segment", str(image), "--checkpoint", str(directory), "--vision-path", str(altered)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(altered) in err and "vision.path" in err


def test_missing_or_extra_tensors_are_named(tmp_path) -> None:
    model = build_preset("find_tiny")
    directory = save_model(model, model.config, tmp_path / "m")
    weights = load_file(str(directory / "model.safetensors"))
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    del weights["lang_proj"]
    save_file(weights, str(directory / "model.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match=r"missing keys \['lang_proj'\]"):
        load_model(directory)
    save_file(weights, str(directory / "model.safetensors"))  # no findvl metadata
    with pytest.raises(ValueError, match="not a findvl-model weights file"):
        load_model(directory)
    save_file(weights, str(directory / "model.safetensors"), metadata=metadata)
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match=r"model\.safetensors: unreadable"):
        load_model(directory)


def test_a_frozen_random_encoder_is_kept_inside(tmp_path) -> None:
    """Frozen weights with no other home (a frozen tiny encoder) stay in the model file."""
    config = build_preset("find_tiny").config
    config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, trainable=False))
    torch.manual_seed(5)
    model = build_model(config)
    directory = save_model(model, config, tmp_path / "m")
    torch.manual_seed(6)  # a different random init is overwritten by the file
    _same_state(load_model(directory)[0], model)


def test_inference_imports_no_training_code(tmp_path) -> None:
    model = build_preset("find_tiny")
    save_model(model, model.config, tmp_path / "m", vocabulary=VOCAB)
    code = (
        "import sys\nimport findvl.runs, findvl.predictor\n"
        f"predictor = findvl.predictor.FindPredictor.from_checkpoint({str(tmp_path / 'm')!r})\n"
        "predictor.set_image(__import__('torch').zeros(3, 32, 32))\n"
        "print(sorted(m for m in sys.modules if m.startswith('findvl.train')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def _stepped(seed: int):
    from findvl.train.optim import OptimizerConfig, build_optimizer

    model = build_preset("find_synth", seed=seed)
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-2, clip_grad_norm=0.0))
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=generator)
    optimizer.step()
    return model, optimizer


def test_a_training_checkpoint_is_a_model_file_with_its_optimizer_beside(tmp_path) -> None:
    from findvl.train.checkpoint import load_checkpoint, save_checkpoint

    model, optimizer = _stepped(seed=1)
    path = save_checkpoint(
        tmp_path / "run", step=1, model=model, optimizer=optimizer,
        model_config=model.config, vocabulary=VOCAB,
    )  # fmt: skip
    names = sorted(p.name for p in path.iterdir())
    assert names == [
        "config.json", "model.safetensors", "optimizer.json", "optimizer.safetensors",
        "rng.safetensors", "state.json", "vocabulary.json",
    ]  # fmt: skip
    state = json.loads((path / "state.json").read_text())
    assert state["model_file"] and set(state["hashes"]) == set(names) - {"state.json"}
    _same_state(load_model(path)[0], model)
    resumed, resumed_optimizer = _stepped(seed=2)
    load_checkpoint(path, model=resumed, optimizer=resumed_optimizer)
    _same_state(resumed, model)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    resumed_params = [p for g in resumed_optimizer.param_groups for p in g["params"]]
    for p, q in zip(params, resumed_params, strict=True):
        a, b = optimizer.state[p], resumed_optimizer.state[q]
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))


def test_checkpoints_from_before_the_model_file_still_load(tmp_path) -> None:
    """Former layout: every state tensor in model.safetensors, the config in state.json."""
    from findvl.train.checkpoint import save_checkpoint
    from findvl.train.config import TrainConfig

    model = build_preset("find_synth", seed=4)
    config = {"train": TrainConfig(model=model.config).to_dict(), "vocabulary": VOCAB}
    path = save_checkpoint(tmp_path / "run", step=2, model=model, config=config)
    assert not (path / "config.json").exists()
    run = load_run(tmp_path / "run")
    assert run.checkpoint == path and run.class_names == VOCAB["names"]
    _same_state(run.model, model)


def test_loading_modules_name_no_training_module() -> None:
    """Also the imports inside functions (the subprocess test runs one path through them)."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "findvl"
    files = [src / n for n in ("build.py", "runs.py", "model_file.py", "run_files.py")]
    for path in files + sorted((src / "predictor").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not [n for n in names if n.startswith("findvl.train")], path.name
