"""Embeddings of an index, in shards: one shard per embedded batch, appended, never rewritten.

On disk (``INDEX/shards/``) a shard is ``NNNNNNNN.images.npy`` ``[B,P]``,
``NNNNNNNN.objects.npy`` ``[B,N,P]`` (float32, raw model outputs) and ``NNNNNNNN.json``
(the images' ids and the files skipped in the batch). The JSON is written last, atomically: a
shard without it was cut short and is removed when the store is opened, so a build killed at
any moment resumes from its last complete batch. Arrays are memory-mapped when read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHARD_DIR = "shards"


@dataclass
class Shard:
    """One batch of embedded images.

    Attributes:
        ids: ``B`` gallery ids (image paths relative to the collection root).
        images: ``[B,P]`` image embeddings.
        objects: ``[B,N,P]`` object-proposal embeddings.
        skipped: ``{"path", "error"}`` of files of the batch that could not be read.
    """

    ids: list[str]
    images: np.ndarray
    objects: np.ndarray
    skipped: list[dict] = field(default_factory=list)


def _write_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, np.float32), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, value) -> None:
    """Write ``value`` as JSON atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EmbeddingStore:
    """Shards in order; row ``r`` of the gallery is row ``r - offset`` of its shard.

    Args:
        root: the index directory (shards under ``root/shards``); None keeps them in memory.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = None if root is None else Path(root)
        self.shards: list[Shard] = []
        self._images: np.ndarray | None = None
        self._ids: list[str] | None = None
        self._starts = [0]  # first row of each shard, then G (kept up to date by append)
        self._starts_array: np.ndarray | None = None
        self._id_set: set[str] | None = None

    # ---- reading ------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> EmbeddingStore:
        """The complete shards under ``root``; leftovers of an interrupted batch are removed."""
        store = cls(root)
        folder = store.root / SHARD_DIR
        if not folder.is_dir():
            return store
        complete = sorted(p for p in folder.glob("*.json") if p.stem.isdigit())
        for number, meta_path in enumerate(complete):
            if int(meta_path.stem) != number:
                raise ValueError(
                    f"{folder}: shard {number:08d} is missing (found {meta_path.name})"
                )
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            images = np.load(folder / f"{meta_path.stem}.images.npy", mmap_mode="r")
            objects = np.load(folder / f"{meta_path.stem}.objects.npy", mmap_mode="r")
            if images.shape[0] != len(meta["ids"]) or objects.shape[0] != len(meta["ids"]):
                raise ValueError(f"{meta_path}: {len(meta['ids'])} ids for {images.shape[0]} rows")
            store._keep(Shard(meta["ids"], images, objects, meta.get("skipped", [])))
        for leftover in folder.iterdir():
            stem = leftover.name.split(".")[0]
            if not stem.isdigit() or int(stem) >= len(complete):
                leftover.unlink()
        return store

    @property
    def ids(self) -> list[str]:
        """Gallery ids in row order (cached; do not modify)."""
        if self._ids is None or len(self._ids) != len(self):
            self._ids = [i for s in self.shards for i in s.ids]
        return self._ids

    def __contains__(self, image_id: str) -> bool:
        if self._id_set is None:
            self._id_set = set(self.ids)
        return image_id in self._id_set

    @property
    def skipped(self) -> list[dict]:
        return [k for s in self.shards for k in s.skipped]

    def starts(self) -> np.ndarray:
        """``[S+1]`` first gallery row of each shard, then the row count (cached)."""
        if self._starts_array is None or len(self._starts_array) != len(self._starts):
            self._starts_array = np.array(self._starts, np.int64)
        return self._starts_array

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def dims(self) -> tuple[int, int] | None:
        """``(P, N)``: embedding size and objects per image (None while empty)."""
        for s in self.shards:
            if len(s.ids):
                return int(s.images.shape[1]), int(s.objects.shape[1])
        return None

    def images(self) -> np.ndarray:
        """``[G,P]`` every image embedding (concatenated once, then cached)."""
        if self._images is None or self._images.shape[0] != len(self):
            parts = [np.asarray(s.images) for s in self.shards if len(s.ids)]
            if len(parts) == 1:
                self._images = parts[0]
            elif parts:
                self._images = np.concatenate(parts)
            else:
                self._images = np.zeros((0, 0), np.float32)
        return self._images

    def objects(self, rows: np.ndarray) -> np.ndarray:
        """``[C,N,P]`` object embeddings of gallery rows ``rows [C]`` (read from the shards)."""
        rows = np.asarray(rows, np.int64)
        starts = self.starts()
        which = np.searchsorted(starts, rows, side="right") - 1
        dim, num = self.dims
        out = np.empty((len(rows), num, dim), np.float32)
        for shard in np.unique(which):
            pick = np.nonzero(which == shard)[0]
            out[pick] = self.shards[shard].objects[rows[pick] - starts[shard]]
        return out

    def all_objects(self) -> np.ndarray:
        """``[G,N,P]`` every object embedding (for exact score matrices over small galleries)."""
        return self.objects(np.arange(len(self)))

    # ---- writing ------------------------------------------------------------------------
    def _keep(self, shard: Shard) -> None:
        """Hold ``shard`` in memory (already on disk, or an in-memory store)."""
        self.shards.append(shard)
        self._starts.append(self._starts[-1] + len(shard.ids))
        if self._id_set is not None:
            self._id_set.update(shard.ids)

    def append(self, shard: Shard) -> int:
        """Add ``shard`` (written and committed when the store is on disk); its number."""
        dims = self.dims
        if len(shard.ids) and dims is not None:
            got = (int(shard.images.shape[1]), int(shard.objects.shape[1]))
            if got != dims:
                raise ValueError(f"shard dims (P, N) = {got}, the store holds {dims}")
        if len(shard.ids) != shard.images.shape[0] or len(shard.ids) != shard.objects.shape[0]:
            raise ValueError(f"shard: {len(shard.ids)} ids for {shard.images.shape[0]} rows")
        number = len(self.shards)
        if self.root is not None:
            folder = self.root / SHARD_DIR
            folder.mkdir(parents=True, exist_ok=True)
            _write_array(folder / f"{number:08d}.images.npy", shard.images)
            _write_array(folder / f"{number:08d}.objects.npy", shard.objects)
            meta = {"ids": list(shard.ids), "skipped": list(shard.skipped)}
            write_json(folder / f"{number:08d}.json", meta)  # the commit
        self._keep(shard)
        return number
