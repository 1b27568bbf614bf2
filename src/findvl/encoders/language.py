"""Language encoders: one contract, ``encode(texts) -> TokenFeatures``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TokenFeatures:
    """Token features of a batch of texts.

    Attributes:
        features: ``[B,L,D]`` token features (zeros at padding).
        mask: ``[B,L]`` bool, True at real tokens (special tokens included), False at padding.
        offsets: ``[B,L,2]`` int64 character ``(start, end)`` of each token in its text;
            ``(0, 0)`` for special and padding tokens.
        sentence: ``[B,D]`` one embedding per text (mean of valid tokens, or the EOT token).
    """

    features: torch.Tensor
    mask: torch.Tensor
    offsets: torch.Tensor
    sentence: torch.Tensor

    def to(self, device: torch.device | str) -> TokenFeatures:
        return TokenFeatures(
            self.features.to(device),
            self.mask.to(device),
            self.offsets.to(device),
            self.sentence.to(device),
        )

    def select(self, index: list[int] | torch.Tensor) -> TokenFeatures:
        """Rows ``index`` of the batch."""
        return TokenFeatures(
            self.features[index], self.mask[index], self.offsets[index], self.sentence[index]
        )


class LanguageEncoder(nn.Module):
    """Base class of every language encoder.

    Subclasses set ``dim`` (feature size) and ``cache_key`` (model identity + feature layer,
    used by the text-feature cache) and implement :meth:`encode`.
    """

    dim: int
    cache_key: str
    model_type: str = "language"

    def encode(self, texts: list[str]) -> TokenFeatures:
        raise NotImplementedError


def check_texts(texts: list[str], field: str = "texts") -> None:
    """Raise ``ValueError`` naming ``field`` for an empty list or an empty/non-string text."""
    if len(texts) == 0:
        raise ValueError(f"{field}: the list is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{field}[{i}]: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{field}[{i}]: empty text")


def entity_token_map(offsets: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Which tokens belong to which character span.

    Args:
        offsets: ``[L,2]`` token character offsets of one text.
        spans: ``E`` character spans ``(start, end)``, end exclusive.

    Returns:
        ``[E,L]`` bool; token t belongs to span e if it is non-empty and lies inside it.
    """
    starts, ends = offsets[:, 0], offsets[:, 1]
    non_empty = ends > starts
    out = torch.zeros(len(spans), offsets.shape[0], dtype=torch.bool, device=offsets.device)
    for e, (s, t) in enumerate(spans):
        out[e] = non_empty & (starts >= s) & (ends <= t)
    return out


class HashTokenizer:
    """A tokenizer that needs no vocabulary file: words and punctuation hashed into buckets.

    Ids 0 and 1 are padding and BOS; every other id is ``2 + blake2b(word) % (vocab_size - 2)``.
    Deterministic across processes and machines.
    """

    pattern = re.compile(r"\w+|[^\w\s]", re.UNICODE)

    def __init__(self, *, vocab_size: int = 8192, max_length: int = 77) -> None:
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.pad_id, self.bos_id = 0, 1

    def token_id(self, word: str) -> int:
        digest = hashlib.blake2b(word.lower().encode("utf-8"), digest_size=8).digest()
        return 2 + int.from_bytes(digest, "little") % (self.vocab_size - 2)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Texts -> ``ids [B,L]``, ``mask [B,L]`` (True = token) and ``offsets [B,L,2]``."""
        rows = []
        for text in texts:
            tokens = [(self.bos_id, 0, 0)]
            for m in self.pattern.finditer(text):
                tokens.append((self.token_id(m.group()), m.start(), m.end()))
            rows.append(tokens[: self.max_length])
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        offsets = torch.zeros(len(rows), length, 2, dtype=torch.long)
        for i, row in enumerate(rows):
            for j, (tid, s, e) in enumerate(row):
                ids[i, j], mask[i, j] = tid, True
                offsets[i, j, 0], offsets[i, j, 1] = s, e
        return ids, mask, offsets


class TinyLanguageEncoder(LanguageEncoder):
    """A small transformer text encoder with a hashing tokenizer (not pretrained).

    Args:
        dim: feature size.
        num_layers: transformer layers.
        num_heads: attention heads.
        vocab_size: hash buckets of the tokenizer.
        max_length: longest token sequence (BOS included); longer texts are truncated.
    """

    model_type = "tiny"

    def __init__(
        self,
        *,
        dim: int = 64,
        num_layers: int = 1,
        num_heads: int = 4,
        vocab_size: int = 8192,
        max_length: int = 77,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.tokenizer = HashTokenizer(vocab_size=vocab_size, max_length=max_length)
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_length, dim)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim * 4, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(dim)
        self.cache_key = f"tiny-hash{vocab_size}-d{dim}-l{num_layers}"

    def encode(self, texts: list[str]) -> TokenFeatures:
        check_texts(texts)
        ids, mask, offsets = self.tokenizer(texts)
        device = self.embed.weight.device
        ids, mask, offsets = ids.to(device), mask.to(device), offsets.to(device)
        positions = torch.arange(ids.shape[1], device=device)
        x = self.embed(ids) + self.position(positions)[None]
        x = self.layers(x, src_key_padding_mask=~mask)
        x = self.final_norm(x) * mask[..., None]
        sentence = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return TokenFeatures(features=x, mask=mask, offsets=offsets, sentence=sentence)
