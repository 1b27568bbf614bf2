"""Text-feature cache: encode each distinct text once (in memory, optionally on disk).

Key: ``sha256(encoder.cache_key + "\\0" + text)``. ``cache_key`` names the checkpoint (resolved
path + hash of its ``config.json``), the selected feature layer (``layer=-12``), ``max_length``
and the dtype, so any setting that changes the features changes the key.

Each entry holds one text's *unpadded* features ``[n,D]``, offsets ``[n,2]`` and sentence ``[D]``
where ``n`` is its token count (special tokens included, at most ``max_length``). A batch is
reassembled with the padding rule of the encoders: right padding to the longest text of the
batch, ``L = max(n_i)``, zeros at padding. Because token counts do not depend on the other texts,
a batch of hits and misses has exactly the layout of an uncached call; the values agree with it
up to float rounding (masked padding does not reach the valid tokens).

The cache is only used while the wrapped encoder is frozen (no parameter requires grad). If any
parameter becomes trainable, calls bypass the cache and the in-memory entries are dropped. The
disk cache is tied to the checkpoint's identity: do not share a directory between runs that
change the encoder's weights in place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from findvl.encoders.language import LanguageEncoder, TokenFeatures, check_texts


@dataclass
class CacheStats:
    """Counters since construction: texts served from memory/disk, encoded, or bypassed."""

    hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    bypassed: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True)
class CachedText:
    """One text's features: ``features [n,D]`` fp32, ``offsets [n,2]`` int64, ``sentence [D]``."""

    features: torch.Tensor
    offsets: torch.Tensor
    sentence: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.features, self.offsets, self.sentence)
        )


def split_rows(out: TokenFeatures) -> list[CachedText]:
    """A right-padded batch -> one unpadded CPU entry per text."""
    entries = []
    for i, n in enumerate(out.mask.sum(1).tolist()):
        entries.append(
            CachedText(
                features=out.features[i, :n].detach().float().cpu().clone(),
                offsets=out.offsets[i, :n].cpu().clone(),
                sentence=out.sentence[i].detach().float().cpu().clone(),
            )
        )
    return entries


def assemble(entries: list[CachedText], device: torch.device) -> TokenFeatures:
    """Entries -> a right-padded batch with ``L = max(n_i)`` (zeros at padding)."""
    length = max(e.features.shape[0] for e in entries)
    dim = entries[0].features.shape[1]
    features = torch.zeros(len(entries), length, dim)
    mask = torch.zeros(len(entries), length, dtype=torch.bool)
    offsets = torch.zeros(len(entries), length, 2, dtype=torch.long)
    for i, entry in enumerate(entries):
        n = entry.features.shape[0]
        features[i, :n], mask[i, :n], offsets[i, :n] = entry.features, True, entry.offsets
    sentence = torch.stack([e.sentence for e in entries])
    return TokenFeatures(features=features, mask=mask, offsets=offsets, sentence=sentence).to(
        device
    )


class TextFeatureCache(LanguageEncoder):
    """A :class:`LanguageEncoder` that wraps another one and caches its per-text features.

    The cache store is plain Python state owned by this wrapper (its purpose), never by the
    wrapped encoder.

    Args:
        encoder: the language encoder to wrap.
        max_entries: bound of the in-memory LRU by number of texts (None: unbounded).
        max_bytes: bound of the in-memory LRU by tensor bytes (None: unbounded).
        directory: if given, entries are also stored there as safetensors files
            (``<dir>/<key[:2]>/<key>.safetensors``, written atomically) and read back on a miss.
    """

    def __init__(
        self,
        encoder: LanguageEncoder,
        *,
        max_entries: int | None = 4096,
        max_bytes: int | None = None,
        directory: str | Path | None = None,
    ) -> None:
        super().__init__()
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None, got {max_entries}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1 or None, got {max_bytes}")
        self.encoder = encoder
        self.dim, self.cache_key, self.model_type = (
            encoder.dim,
            encoder.cache_key,
            encoder.model_type,
        )
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.directory = Path(directory) if directory is not None else None
        self.stats = CacheStats()
        self._memory: OrderedDict[str, CachedText] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.encoder.parameters())

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.cache_key}\0{text}".encode()).hexdigest()

    def clear(self) -> None:
        """Drop the in-memory entries (files on disk are kept)."""
        self._memory.clear()
        self._bytes = 0

    def encode(self, texts: list[str]) -> TokenFeatures:
        """Like the wrapped encoder's ``encode``; only texts not cached are encoded."""
        check_texts(texts)
        if not self.is_frozen:
            self.clear()
            self.stats.bypassed += len(texts)
            return self.encoder.encode(texts)
        keys = [self.key(text) for text in texts]
        found: dict[str, CachedText] = {}
        missing: dict[str, str] = {}  # key -> text, each distinct missing text once
        for key, text in zip(keys, texts):
            if key in found or key in missing:
                self.stats.hits += 1
                continue
            entry = self._lookup(key, text)
            if entry is None:
                missing[key] = text
                self.stats.misses += 1
            else:
                found[key] = entry
                self.stats.hits += 1
        if missing:
            encoded = split_rows(self.encoder.encode(list(missing.values())))
            for (key, text), entry in zip(missing.items(), encoded):
                found[key] = entry
                self._remember(key, entry)
                self._write(key, text, entry)
        return assemble([found[key] for key in keys], self._device())

    def _device(self) -> torch.device:
        parameter = next(self.encoder.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def _lookup(self, key: str, text: str) -> CachedText | None:
        entry = self._memory.get(key)
        if entry is not None:
            self._memory.move_to_end(key)
            return entry
        entry = self._read(key, text)
        if entry is not None:
            self.stats.disk_hits += 1
            self._remember(key, entry)
        return entry

    def _remember(self, key: str, entry: CachedText) -> None:
        self._memory[key] = entry
        self._bytes += entry.nbytes
        while self._memory and (
            (self.max_entries is not None and len(self._memory) > self.max_entries)
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            _, evicted = self._memory.popitem(last=False)
            self._bytes -= evicted.nbytes

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.safetensors"

    def _read(self, key: str, text: str) -> CachedText | None:
        """The entry stored on disk for ``key``; None if absent, unreadable or not this text."""
        if self.directory is None or not self._path(key).is_file():
            return None
        try:
            with safe_open(str(self._path(key)), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("cache_key") != self.cache_key or meta.get("text") != text:
                    return None
                tensors = {name: f.get_tensor(name) for name in ("features", "offsets", "sentence")}
        except (SafetensorError, OSError, KeyError):
            return None  # a damaged file is re-encoded and overwritten
        return CachedText(**tensors)

    def _write(self, key: str, text: str, entry: CachedText) -> None:
        """Write ``entry`` atomically (temp file in the same folder + rename)."""
        if self.directory is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"features": entry.features, "offsets": entry.offsets, "sentence": entry.sentence}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"cache_key": self.cache_key, "text": text})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
