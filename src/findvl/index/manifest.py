"""The manifest of an index directory: which model embedded it, its dimensions, its backend.

``INDEX/manifest.json`` is written when an index is created and rewritten (atomically) at the
end of each build; the image ids live with their shards (:mod:`findvl.index.store`). A
checkpoint whose config hash or weights hash differs from the manifest's is refused: its
embeddings would not be comparable with the stored ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = "findvl-index"
VERSION = 1
MANIFEST = "manifest.json"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: dict) -> str:
    """sha256 of a config's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelFingerprint:
    """What must match for two embeddings to be comparable.

    Attributes:
        preset: the model preset (informational).
        config_hash: sha256 of the model config.
        weights_hash: sha256 of the learned weights (the checkpoint's ``model.safetensors``,
            or the state dict of a model built in memory).
        checkpoint: where the weights came from (informational).
    """

    preset: str
    config_hash: str
    weights_hash: str
    checkpoint: str = ""

    @classmethod
    def of_run(cls, loaded) -> ModelFingerprint:
        """Fingerprint of a :class:`findvl.runs.LoadedRun` (config + checkpoint weights file)."""
        model_config = loaded.config
        return cls(
            preset=model_config.preset,
            config_hash=config_hash(model_config.to_dict()),
            weights_hash=_sha256_file(Path(loaded.checkpoint) / "model.safetensors"),
            checkpoint=str(loaded.checkpoint),
        )

    @classmethod
    def of_model(cls, model, preset: str = "custom") -> ModelFingerprint:
        """Fingerprint of a model in memory: every state tensor's name, shape, dtype, bytes."""
        import torch

        digest = hashlib.sha256()
        shapes = {}
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            shapes[name] = [list(t.shape), str(t.dtype)]
            digest.update(name.encode())
            digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
        return cls(preset, config_hash(shapes), digest.hexdigest())

    def mismatch(self, other: ModelFingerprint) -> str | None:
        """Why ``other`` cannot add to or search an index built with ``self`` (None: it can)."""
        for name in ("config_hash", "weights_hash"):
            if getattr(self, name) != getattr(other, name):
                source = self.checkpoint or "a model"
                return (
                    f"{name.replace('_', ' ')} {getattr(other, name)[:12]} differs from the "
                    f"index's {getattr(self, name)[:12]} (built from {source})"
                )
        return None


@dataclass
class IndexManifest:
    """Contents of ``manifest.json``.

    Attributes:
        model: the fingerprint of the model that embedded the images.
        dim: embedding size ``P`` (0 until the first image is embedded).
        objects: object embeddings per image ``N``.
        batch_size: images per embedded batch (a resumed build keeps it, so batches, and so
            every embedding, are the same as in an uninterrupted build).
        ann: the first stage's settings (:meth:`AnnBackend.describe`).
        collection: the image folder the ids are relative to.
        num_images: images embedded; ``num_skipped``: files that could not be read.
    """

    model: ModelFingerprint
    dim: int = 0
    objects: int = 0
    batch_size: int = 8
    ann: dict = field(default_factory=dict)
    collection: str = ""
    num_images: int = 0
    num_skipped: int = 0

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str = MANIFEST) -> IndexManifest:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{where}: not a findvl index manifest (format {data.get('format')!r})"
            )
        if data.get("version") != VERSION:
            raise ValueError(f"{where}: index version {data.get('version')!r}, expected {VERSION}")
        fields = {k: v for k, v in data.items() if k not in ("format", "version")}
        fields["model"] = ModelFingerprint(**fields["model"])
        return cls(**fields)

    def save(self, root: Path) -> None:
        from findvl.index.store import write_json

        write_json(Path(root) / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, root: Path) -> IndexManifest:
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{root}: not an index (no {MANIFEST})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: unreadable JSON ({error})") from None
        return cls.from_dict(data, str(path))
