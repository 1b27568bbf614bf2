"""The UniCL text tower: names, shapes, tokenisation, causality, EOT sentence feature."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from findvl.build import build_language, shipped_path
from findvl.config import LanguageConfig
from findvl.encoders.unicl_text import UniclTextEncoder, load_clip_tokenizer

TOKENIZER = shipped_path("synth-clip-text")


@pytest.fixture(scope="module")
def tower() -> UniclTextEncoder:
    torch.manual_seed(0)
    tokenizer = load_clip_tokenizer(TOKENIZER)
    return UniclTextEncoder(
        tokenizer=tokenizer, width=32, layers=2, heads=4, vocab_size=len(tokenizer)
    ).eval()


def test_parameter_names_are_the_released_ones(tower) -> None:
    names = set(tower.state_dict())
    assert {"token_embedding.weight", "positional_embedding", "ln_final.weight"} <= names
    block = {k.removeprefix("resblocks.1.") for k in names if k.startswith("resblocks.1.")}
    assert block == {
        "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
        "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
        "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
    }  # fmt: skip
    assert tower.positional_embedding.shape == (77, 32)


def test_tokens_start_and_end_markers_and_eot_sentence(tower) -> None:
    out = tower.encode(["a red circle", "square"])
    ids = tower.tokenizer(["a red circle"])["input_ids"][0]
    assert ids[0] == tower.tokenizer.bos_token_id and ids[-1] == tower.tokenizer.eos_token_id
    assert out.mask[0].sum() == len(ids) and out.features.shape == (2, len(ids), 32)
    last = out.mask.sum(1) - 1
    torch.testing.assert_close(out.sentence, out.features[torch.arange(2), last])
    assert torch.all(out.features[1, int(last[1]) + 1 :] == 0)  # padding is zero


def test_causal_features_do_not_depend_on_the_batch(tower) -> None:
    alone = tower.encode(["square"])
    batched = tower.encode(["square", "a very long sentence about a red circle on the left"])
    n = int(alone.mask[0].sum())
    torch.testing.assert_close(batched.features[0, :n], alone.features[0, :n])


def test_built_from_the_config_and_frozen() -> None:
    config = LanguageConfig(
        kind="unicl", path=TOKENIZER, dim=32, num_layers=1, num_heads=4, vocab_size=1000
    )
    encoder = build_language(config)
    assert isinstance(encoder, UniclTextEncoder) and encoder.dim == 32
    assert not any(p.requires_grad for p in encoder.parameters())
    small = LanguageConfig(kind="unicl", path=TOKENIZER, dim=32, num_layers=1, num_heads=4,
                           vocab_size=10)  # fmt: skip
    with pytest.raises(ValueError, match="token table has 10 rows"):
        build_language(small).encode(["a red circle"])


def test_tokenizer_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer directory"):
        load_clip_tokenizer(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither tokenizer.json nor vocab.json"):
        load_clip_tokenizer(tmp_path)
