"""The model file: a :class:`ModelConfig` and the learned weights of a model, nothing more.

A model file is a directory holding

* ``config.json`` — the whole :class:`~findvl.config.ModelConfig` (``ModelConfig.to_json()``);
* ``model.safetensors`` — every state-dict tensor except those of the *foundation models*:
  frozen encoders loaded from a local directory named in the config (a Hugging Face vision
  backbone under ``vision.path``, a Hugging Face language model under ``language.path``,
  shipped ones as ``findvl:NAME``). Its metadata records, per foundation model, the config
  field, the path as configured, the state-dict prefix it fills and the SHA-256 of its weight
  files (:func:`weights_sha256`), so a model is never loaded over other frozen weights;
* ``vocabulary.json`` (optional) — the class names and thing flags it was trained with.

Everything else is inside: learned weights, the text standardisation buffers, and weights that
are frozen but have no other home (a frozen random tiny encoder, a released backbone converted
by ``findvl convert``). Pure file handling: building the model is :func:`findvl.build.load_model`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from findvl.config import ModelConfig, from_dict
from findvl.presets import SHIPPED

FORMAT = "findvl-model"
VERSION = "1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCABULARY_FILE = "vocabulary.json"
#: Files of a foundation directory whose bytes :func:`weights_sha256` covers.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Foundation:
    """A frozen part of the model loaded from a directory named in the config.

    Attributes:
        field: the config field naming the directory (``vision.path``, ``language.path``).
        path: its value (``findvl:NAME``, a relative or an absolute path).
        prefix: the state-dict prefix of the weights it fills (not stored in the model file).
    """

    field: str
    path: str
    prefix: str


def foundations(config: ModelConfig) -> list[Foundation]:
    """The foundation models of ``config`` (built-in, UniCL and official parts have none)."""
    found = []
    if config.vision.kind == "hf":
        found.append(Foundation("vision.path", config.vision.path or "", "vision.backbone."))
    if config.language.kind == "hf":
        found.append(Foundation("language.path", config.language.path or "", "language."))
    return found


def shipped_path(name: str) -> str:
    """The directory of a shipped encoder (``findvl:NAME`` in configs)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained", name)


def foundation_directory(path: str, *, base: str | Path | None = None) -> Path:
    """The directory a config path names: ``findvl:NAME`` is shipped; a relative path is taken
    relative to ``base`` (None: the working directory)."""
    if path.startswith(SHIPPED):
        return Path(shipped_path(path[len(SHIPPED) :]))
    directory = Path(path).expanduser()
    if base is not None and not directory.is_absolute():
        directory = Path(base) / directory
    return directory


def with_paths_under(config: ModelConfig, base: str | Path) -> ModelConfig:
    """A copy of ``config`` whose relative encoder and tokenizer paths are taken under ``base``
    (shipped and absolute paths stay)."""

    def moved(path: str | None) -> str | None:
        if not path or path.startswith(SHIPPED) or Path(path).is_absolute():
            return path
        return str(Path(base) / path)

    return replace(
        config,
        vision=replace(config.vision, path=moved(config.vision.path)),
        language=replace(config.language, path=moved(config.language.path)),
    )


# --- hashes -----------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_WEIGHTS_CACHE: dict[tuple, str] = {}


def weights_sha256(directory: str | Path) -> str:
    """SHA-256 over the weight files (:data:`WEIGHT_SUFFIXES`) of a model directory: their
    names and contents, in name order. Remembered per process while no file changes (name,
    size and modification time), so repeated saves of one run hash a large model once."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such model directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ValueError(f"{directory}: no weight files (*.safetensors, *.bin, *.pt, *.pth)")
    stats = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(directory.resolve()), stats)
    if key not in _WEIGHTS_CACHE:
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
        _WEIGHTS_CACHE[key] = digest.hexdigest()
    return _WEIGHTS_CACHE[key]


# --- tensors ----------------------------------------------------------------------------------


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` to a safetensors file (on CPU, contiguous, no shared memory) and
    fsync it."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        if value.numel() and value.untyped_storage().data_ptr() in seen:
            value = value.clone()  # safetensors refuses tensors that share memory
        if value.numel():
            seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    save_file(out, str(path), metadata=metadata)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def learned_state(model: nn.Module, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state-dict tensors a model file stores: all but the foundation models'.

    Raises ``ValueError`` if a trainable parameter lies inside a foundation model (it would be
    lost)."""
    prefixes = tuple(f.prefix for f in foundations(config))
    lost = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefixes)]
    if lost:
        raise ValueError(
            f"trainable parameters inside a foundation model would be lost: {lost[:4]}"
        )
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}


def check_model_tensors(
    path: Path, loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """``ValueError`` naming missing, unexpected and differently shaped model tensors."""
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(loaded) & set(expected))
        if loaded[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches [{'; '.join(mismatched)}]")
    if problems:
        raise ValueError(f"checkpoint {path / WEIGHTS_FILE}: " + ", ".join(problems))


def check_finite(path: Path, tensors: dict[str, torch.Tensor], file: str) -> None:
    """``ValueError`` naming the first floating-point tensor holding NaN or infinity."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"checkpoint {path}: {file}: {name} holds NaN or infinite values (the run "
                "diverged before this save; use an earlier checkpoint)"
            )


# --- write / read -----------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_model_file(
    directory: str | Path,
    model: nn.Module,
    config: ModelConfig,
    *,
    vocabulary: dict[str, Any] | None = None,
    base: str | Path | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` (and ``vocabulary.json``) into ``directory``.

    Args:
        directory: created if missing; files of the same names are replaced.
        model: the model built from ``config`` (its foundation weights are not written).
        config: the model's config, written as is (paths stay as configured).
        vocabulary: ``{"names": [...], "isthing": [...]}`` of the training data, if any.
        base: what relative foundation paths are relative to (None: the working directory).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    found = [
        {"field": f.field, "path": f.path,
         "sha256": weights_sha256(foundation_directory(f.path, base=base))}
        for f in foundations(config)
    ]  # fmt: skip
    metadata = {"format": FORMAT, "version": VERSION, "foundations": json.dumps(found)}
    _write_text(directory / CONFIG_FILE, config.to_json())
    if vocabulary is not None:
        vocab = {"names": list(vocabulary["names"]), "isthing": list(vocabulary["isthing"])}
        _write_text(directory / VOCABULARY_FILE, json.dumps(vocab, indent=1))
    save_tensors(directory / WEIGHTS_FILE, learned_state(model, config), metadata)
    return directory


def is_model_file(directory: str | Path) -> bool:
    """Whether ``directory`` holds a model file (``config.json`` + ``model.safetensors``)."""
    directory = Path(directory)
    return (directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{file}: unreadable ({error!r:.200})") from None


def read_model_config(directory: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of a model file (``ValueError`` naming the file if bad)."""
    file = Path(directory) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file (not a findvl model file)")
    try:
        return from_dict(ModelConfig, _read_json(file))
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from None


def read_vocabulary(directory: str | Path) -> tuple[list[str], list[bool]] | None:
    """``(names, isthing)`` of a model file's ``vocabulary.json``, or None if it has none."""
    file = Path(directory) / VOCABULARY_FILE
    if not file.is_file():
        return None
    data = _read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("names"), list):
        raise ValueError(f"{file}: expected an object with a list 'names'")
    names = [str(n) for n in data["names"]]
    isthing = [bool(t) for t in data.get("isthing", [True] * len(names))]
    if len(isthing) != len(names):
        raise ValueError(f"{file}: 'names' and 'isthing' differ in length")
    return names, isthing


def read_foundations(directory: str | Path) -> list[dict[str, str]]:
    """The foundation records of a model file's weights (``field``, ``path``, ``sha256``)."""
    file = Path(directory) / WEIGHTS_FILE
    try:
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{file}: unreadable ({error})") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{file}: not a {FORMAT} weights file (format {metadata.get('format')!r})")
    if metadata.get("version") != VERSION:
        raise ValueError(f"{file}: unsupported version {metadata.get('version')!r}")
    try:
        found = json.loads(metadata.get("foundations", "[]"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: metadata 'foundations' is not JSON ({error})") from None
    if not isinstance(found, list) or not all(
        isinstance(f, dict) and {"field", "path", "sha256"} <= set(f) for f in found
    ):
        raise ValueError(f"{file}: metadata 'foundations' is malformed")
    return found


def check_foundations(
    directory: str | Path, config: ModelConfig, *, base: str | Path | None = None
) -> None:
    """``ValueError`` (one line naming the path) unless the foundation directories of
    ``config`` hold the weights the model file was saved with."""
    directory = Path(directory)
    saved = {f["field"]: f for f in read_foundations(directory)}
    current = {f.field: f for f in foundations(config)}
    if set(saved) != set(current):
        raise ValueError(
            f"{directory / WEIGHTS_FILE}: saved over foundation models {sorted(saved)}, the "
            f"config names {sorted(current)}"
        )
    for field, foundation in sorted(current.items()):
        path = foundation_directory(foundation.path, base=base)
        got, want = weights_sha256(path), saved[field]["sha256"]
        if got != want:
            raise ValueError(
                f"{field} {path}: its weights (sha256 {got[:12]}) are not the ones "
                f"{directory} was trained with ({saved[field]['path']}, sha256 {want[:12]}); "
                "give the directory it was trained with"
            )


def load_learned_weights(
    directory: str | Path,
    model: nn.Module,
    config: ModelConfig,
    *,
    base: str | Path | None = None,
    map_location: str = "cpu",
) -> None:
    """Fill ``model`` (built from ``config``) with a model file's weights, in place.

    Checks, each failing with one ``ValueError`` line: the foundation directories hold the
    weights saved with (:func:`check_foundations`), the stored tensors are finite and are
    exactly the model's learned ones with the same shapes.
    """
    directory = Path(directory)
    check_foundations(directory, config, base=base)
    try:
        loaded = load_file(str(directory / WEIGHTS_FILE), device=map_location)
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{directory / WEIGHTS_FILE}: unreadable ({error})") from None
    check_finite(directory, loaded, WEIGHTS_FILE)
    check_model_tensors(directory, loaded, learned_state(model, config))
    model.load_state_dict(loaded, strict=False)
