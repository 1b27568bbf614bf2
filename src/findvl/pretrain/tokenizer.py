"""A CLIP-style byte-level BPE vocabulary learned from the training captions.

The tokenizer is :class:`transformers.CLIPTokenizer` (the tokenizers-backed one) built from a
vocabulary and merges learned here with the same normaliser (NFC, whitespace, lowercase),
pre-tokeniser (CLIP's split regex + byte-level) and ``</w>`` end-of-word suffix as OpenAI's CLIP.
Every byte is in the alphabet, so no text is ever out of vocabulary.

As in OpenAI's vocabulary, ``<|startoftext|>`` and ``<|endoftext|>`` are the last two ids, so the
EOT token has the largest id of any sequence: ``argmax(input_ids)`` (the legacy CLIP pooling) and
"first EOS position" (``ClipTextEncoder.eot_index``) agree.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
SUFFIX = "</w>"  # marks a word's last symbol, as in OpenAI's CLIP vocabulary


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    split = Regex(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    )
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(split, behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )


def _normalizer():
    from tokenizers import Regex, normalizers

    return normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )


def _word_counts(texts: Iterable[str]) -> Counter:
    """Byte-level words of ``texts`` (normalised and split as the tokenizer does) -> counts."""
    normalizer, pre_tokenizer = _normalizer(), _pre_tokenizer()
    counts: Counter = Counter()
    for text in texts:
        counts.update(
            word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        )
    return counts


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def learn_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2):
    """Learn byte-level BPE on ``texts``, deterministically.

    The base vocabulary is OpenAI CLIP's: the 256 byte symbols, then the same with ``</w>``.
    Each step merges the most frequent adjacent pair, ties broken by the pair's text, so the
    same captions always give the same vocabulary (the ``tokenizers`` trainer breaks ties in
    hash order, which changes from run to run).

    Args:
        texts: training captions.
        vocab_size: the most entries of the vocabulary, specials excluded (learning stops
            earlier when no pair occurs ``min_frequency`` times).
        min_frequency: fewest occurrences of a pair for it to be merged.

    Returns:
        ``(vocab, merges)``: token -> id (specials last) and the ordered merge pairs.
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*alphabet, *(c + SUFFIX for c in alphabet)]
    words = {
        (*word[:-1], word[-1] + SUFFIX): count
        for word, count in sorted(_word_counts(texts).items())
    }
    merges: list[tuple[str, str]] = []
    while len(tokens) < vocab_size:
        pairs: Counter = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        tokens.append(best[0] + best[1])
        words = {_merge(symbols, best): count for symbols, count in words.items()}
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    vocab[BOS_TOKEN] = len(vocab)
    vocab[EOS_TOKEN] = len(vocab)
    return vocab, merges


def bpe_merges(tokenizer) -> list[tuple[str, str]]:
    """The ordered merges of a BPE ``tokenizers.Tokenizer`` (from its JSON state)."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def save_tokenizer(tokenizer, directory: Path) -> None:
    """``save_pretrained`` (``tokenizer.json``, config) plus OpenAI's ``vocab.json`` and
    ``merges.txt``, so slow CLIP tokenizers and other tools read the vocabulary too."""
    tokenizer.save_pretrained(directory)
    vocab = tokenizer.get_vocab()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = bpe_merges(tokenizer.backend_tokenizer)
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], *, max_length: int):
    """A ``CLIPTokenizer`` (fast) over ``vocab``/``merges``; pad = unk = EOS as OpenAI's CLIP."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=max_length,
    )


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 1024, max_length: int = 77):
    """Learn a vocabulary on ``texts`` and return the fast ``CLIPTokenizer`` over it."""
    vocab, merges = learn_bpe(texts, vocab_size=vocab_size)
    return build_tokenizer(vocab, merges, max_length=max_length)
