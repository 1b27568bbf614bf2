"""Text-feature cache: hits are identical, mixed batches equal uncached ones, LRU, disk, bypass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from findvl.encoders.language import TinyLanguageEncoder, TokenFeatures
from findvl.encoders.loading import load_language_encoder
from findvl.encoders.text_cache import TextFeatureCache

TEXTS = ["a dog sits", "two people walk a small dog in the park", "the cat sleeps on a sofa"]


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def frozen_tiny() -> TinyLanguageEncoder:
    torch.manual_seed(0)
    return TinyLanguageEncoder(dim=16, num_layers=1).requires_grad_(False).eval()


def assert_same(a: TokenFeatures, b: TokenFeatures, *, exact: bool) -> None:
    assert torch.equal(a.mask, b.mask) and torch.equal(a.offsets, b.offsets)
    if exact:
        assert torch.equal(a.features, b.features) and torch.equal(a.sentence, b.sentence)
    else:
        torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.sentence, b.sentence, atol=1e-5, rtol=1e-5)


def test_hits_return_identical_tensors() -> None:
    cache = TextFeatureCache(frozen_tiny())
    first = cache.encode(TEXTS)
    assert (cache.stats.hits, cache.stats.misses) == (0, 3)
    second = cache.encode(TEXTS)
    assert (cache.stats.hits, cache.stats.misses) == (3, 3)
    assert_same(first, second, exact=True)


def test_mixed_hits_and_misses_equal_uncached_llama(tmp_path: Path, tiny_hf) -> None:
    encoder = load_language_encoder(tiny_hf.llama(tmp_path / "llama"), layer=-2)
    cache = TextFeatureCache(encoder)
    cache.encode([TEXTS[1]])  # the longest text cached alone, others not
    mixed = cache.encode(TEXTS + [TEXTS[0]])
    assert (cache.stats.hits, cache.stats.misses) == (1 + 1, 1 + 2)  # duplicate counted a hit
    assert_same(mixed, encoder.encode(TEXTS + [TEXTS[0]]), exact=False)
    short = cache.encode([TEXTS[0], TEXTS[2]])  # padding length follows the batch, not the cache
    assert_same(short, encoder.encode([TEXTS[0], TEXTS[2]]), exact=False)


def test_lru_bounded_by_entries_and_bytes() -> None:
    cache = TextFeatureCache(frozen_tiny(), max_entries=2)
    cache.encode(TEXTS[:2])
    cache.encode([TEXTS[0]])  # touch: TEXTS[1] becomes least recent
    cache.encode([TEXTS[2]])
    assert len(cache) == 2
    misses = cache.stats.misses
    cache.encode([TEXTS[0], TEXTS[2]])
    assert cache.stats.misses == misses
    cache.encode([TEXTS[1]])
    assert cache.stats.misses == misses + 1
    by_bytes = TextFeatureCache(frozen_tiny(), max_entries=None, max_bytes=1)
    by_bytes.encode(TEXTS)
    assert len(by_bytes) == 0  # every entry is larger than one byte


def test_disk_cache_survives_a_new_process_and_rejects_damaged_files(tmp_path: Path) -> None:
    encoder = frozen_tiny()
    first = TextFeatureCache(encoder, directory=tmp_path / "cache").encode(TEXTS)
    files = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 3 and not list((tmp_path / "cache").rglob("*.tmp"))
    fresh = TextFeatureCache(encoder, directory=tmp_path / "cache")
    assert_same(fresh.encode(TEXTS), first, exact=True)
    assert fresh.stats.disk_hits == 3 and fresh.stats.misses == 0
    files[0].write_bytes(b"damaged")
    again = TextFeatureCache(encoder, directory=tmp_path / "cache")
    assert_same(again.encode(TEXTS), first, exact=False)  # one text re-encoded on its own
    assert again.stats.misses == 1 and files[0].stat().st_size > len(b"damaged")


def test_key_depends_on_cache_key_and_text() -> None:
    cache = TextFeatureCache(frozen_tiny())
    other = TinyLanguageEncoder(dim=16, num_layers=2).requires_grad_(False)
    assert cache.key("a dog") != cache.key("a dog ")
    assert cache.key("a dog") != TextFeatureCache(other).key("a dog")


def test_trainable_encoder_bypasses_and_invalidates() -> None:
    encoder = frozen_tiny()
    cache = TextFeatureCache(encoder)
    cache.encode(TEXTS)
    encoder.requires_grad_(True)
    with torch.no_grad():
        encoder.embed.weight.add_(1.0)
    out = cache.encode(TEXTS)
    assert cache.stats.bypassed == 3 and len(cache) == 0
    assert_same(out, encoder.encode(TEXTS), exact=True)


def test_bad_input_is_rejected() -> None:
    cache = TextFeatureCache(frozen_tiny())
    with pytest.raises(ValueError, match="empty"):
        cache.encode([])
    with pytest.raises(ValueError, match="max_entries"):
        TextFeatureCache(frozen_tiny(), max_entries=0)
