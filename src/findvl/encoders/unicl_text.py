"""The UniCL text tower of the released FIND UniCL configs: a CLIP-style causal transformer.

12 pre-norm residual blocks (width 512, 8 heads, QuickGELU MLP ×4), a learned position table of
77 entries, a final LayerNorm, all LayerNorms with ``eps=1e-12``. Text is tokenised with a CLIP
BPE tokenizer read from a local directory (``vocab.json`` + ``merges.txt`` or
``tokenizer.json``): start token, words, end token (EOT), at most 77 tokens. Features are the
final-norm output of every token; the sentence feature is the EOT token's.

The attention is causal, so a token never sees the padding after it: running the batch at its
longest text instead of always at 77 tokens gives the same features. Parameter names equal the
released checkpoints' ``sem_seg_head.predictor.lang_encoder.lang_encoder.*`` keys minus that
prefix.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from findvl.encoders.hf_language import prepare_tokenizer, tokenize
from findvl.encoders.language import LanguageEncoder, TokenFeatures, check_texts

#: Size of the OpenAI CLIP BPE vocabulary (the token table of the released UniCL towers).
CLIP_VOCAB_SIZE = 49408


class QuickGELU(nn.Module):
    """``x · sigmoid(1.702 x)`` (the activation CLIP towers were trained with)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TextMLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class TextBlock(nn.Module):
    """``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``, causal self-attention."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-12)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width, eps=1e-12)
        self.mlp = TextMLP(width)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        """``x [B,L,C]``, ``causal [L,L]`` bool (True = blocked) -> ``[B,L,C]``."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class UniclTextEncoder(LanguageEncoder):
    """The UniCL text transformer with its CLIP tokenizer (frozen by the builder).

    Args:
        tokenizer: a fast CLIP tokenizer (see :func:`load_clip_tokenizer`).
        width: feature size (512).
        layers: residual blocks (12).
        heads: attention heads (8).
        context_length: entries of the position table and most tokens per text (77).
        vocab_size: rows of the token table (49408 for the CLIP vocabulary).
    """

    model_type = "unicl"

    def __init__(
        self,
        *,
        tokenizer,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
        context_length: int = 77,
        vocab_size: int = CLIP_VOCAB_SIZE,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.dim = width
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        nn.init.trunc_normal_(self.token_embedding.weight, std=0.02)
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)
        self.resblocks = nn.ModuleList(TextBlock(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width, eps=1e-12)
        source = getattr(tokenizer, "name_or_path", "")
        self.cache_key = f"unicl-w{width}-l{layers}-h{heads}-v{vocab_size}|tok={source}"

    def encode(self, texts: list[str]) -> TokenFeatures:
        """Texts -> features ``[B,L,C]`` (zero at padding), mask, offsets, EOT sentence."""
        check_texts(texts)
        ids, mask, offsets = tokenize(self.tokenizer, texts, max_length=self.context_length)
        device = self.positional_embedding.device
        ids, mask, offsets = ids.to(device), mask.to(device), offsets.to(device)
        if int(ids.max()) >= self.token_embedding.num_embeddings:
            raise ValueError(
                f"tokenizer ids reach {int(ids.max())} but the token table has "
                f"{self.token_embedding.num_embeddings} rows (wrong tokenizer directory?)"
            )
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length]
        causal = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
        for block in self.resblocks:
            x = block(x, causal)
        x = self.ln_final(x) * mask[..., None]
        rows = torch.arange(ids.shape[0], device=device)
        sentence = x[rows, eot_index(ids, mask, self.tokenizer.eos_token_id)]
        return TokenFeatures(features=x, mask=mask, offsets=offsets, sentence=sentence)


def eot_index(ids: torch.Tensor, mask: torch.Tensor, eos_id: int) -> torch.Tensor:
    """``[B]`` position of each row's first EOT token (its last valid token if none)."""
    is_eos = (ids == eos_id) & mask
    last_valid = mask.long().sum(1) - 1
    return torch.where(is_eos.any(1), is_eos.long().argmax(1), last_valid)


def load_clip_tokenizer(path: str | Path):
    """A fast CLIP BPE tokenizer from a local directory, padding on the right."""
    from transformers import CLIPTokenizerFast

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"language.path: no tokenizer directory at {path}")
    has_json = (path / "tokenizer.json").is_file()
    has_bpe = (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    if not (has_json or has_bpe):
        raise ValueError(
            f"language.path: {path} holds neither tokenizer.json nor vocab.json + merges.txt"
        )
    tokenizer = CLIPTokenizerFast.from_pretrained(str(path), local_files_only=True)
    return prepare_tokenizer(tokenizer, path=str(path))
