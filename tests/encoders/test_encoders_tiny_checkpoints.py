"""The tiny Hugging Face checkpoints of ``tests/tiny_checkpoints.py`` reload offline."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_tiny_llama_reloads_offline(
    tiny_hf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = tiny_hf.llama(tmp_path / "llama")
    model = AutoModel.from_pretrained(directory, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    ids = tokenizer("a dog")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 3
    assert tokenizer.pad_token is None  # the encoder must fall back to EOS
