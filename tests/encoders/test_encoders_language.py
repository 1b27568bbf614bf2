"""Hugging Face language adapters: layer selection, truncation, tokenisation, loader errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from findvl.encoders.hf_language import resolve_layer
from findvl.encoders.loading import load_language_encoder

TEXTS = ["a dog sits", "two people walk a small dog in the park", "the cat sleeps"]
NUM_LAYERS = 4


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_hf) -> Path:
    return tiny_hf.llama(tmp_path_factory.mktemp("llama") / "llama", num_layers=NUM_LAYERS)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory, tiny_hf) -> Path:
    return tiny_hf.clip(tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def reference_hidden_states(directory: Path, ids, mask) -> tuple[torch.Tensor, ...]:
    """All ``hidden_states`` of the full model, right padding, cumsum position ids."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(
            input_ids=ids, attention_mask=mask.long(), position_ids=position_ids,
            output_hidden_states=True, use_cache=False,
        )  # fmt: skip
    assert len(out.hidden_states) == NUM_LAYERS + 1
    return out.hidden_states


@pytest.mark.parametrize("layer", [-1, -2, -4, -(NUM_LAYERS + 1), 0, 1, NUM_LAYERS])
def test_layer_equals_output_hidden_states(llama_dir: Path, layer: int) -> None:
    encoder = load_language_encoder(llama_dir, layer=layer)
    out = encoder.encode(TEXTS)
    ids = encoder.tokenizer(TEXTS, padding="longest", return_tensors="pt")["input_ids"]
    reference = reference_hidden_states(llama_dir, ids, out.mask)[layer]
    valid = out.mask[..., None]
    torch.testing.assert_close(out.features, reference * valid, atol=1e-5, rtol=1e-5)
    assert (out.features[~out.mask] == 0).all()
    expected_sentence = (reference * valid).sum(1) / out.mask.sum(1, keepdim=True)
    torch.testing.assert_close(out.sentence, expected_sentence, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer, runs", [(-1, 4), (-2, 3), (1, 1), (-5, 0)])
def test_only_layers_up_to_the_selected_one_run(llama_dir: Path, layer: int, runs: int) -> None:
    encoder = load_language_encoder(llama_dir, layer=layer)
    calls = []
    for decoder_layer in encoder.model.layers:
        decoder_layer.register_forward_hook(lambda *_: calls.append(1))
    encoder.encode(TEXTS)
    assert encoder.num_layers_run == runs and len(calls) == runs
    names = encoder.model.state_dict().keys()
    assert not any(name.startswith(f"layers.{runs}.") for name in names)
    applies_norm = layer in (-1, NUM_LAYERS)
    assert isinstance(encoder.model.norm, torch.nn.Identity) != applies_norm


def test_layer_out_of_range_is_rejected(llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="layer -6 is out of range .* 4 layers"):
        load_language_encoder(llama_dir, layer=-6)
    assert resolve_layer(-12, 32) == 21  # the official setting: raw output of layer 21
    assert resolve_layer(-1, 32) == 32


def test_tokenisation_right_padding_bos_eos_offsets(llama_dir: Path) -> None:
    encoder = load_language_encoder(llama_dir, layer=-2)
    tokenizer = encoder.tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    out = encoder.encode(TEXTS)
    lengths = out.mask.sum(1).tolist()
    assert lengths == [4, 10, 4] and out.features.shape == (3, 10, 32)
    assert out.mask[0, :4].all() and not out.mask[0, 4:].any()  # right padding
    ids = tokenizer(TEXTS, padding="longest", return_tensors="pt")["input_ids"]
    assert (ids[:, 0] == tokenizer.bos_token_id).all()  # BOS kept
    assert out.offsets[0].tolist()[:4] == [[0, 0], [0, 1], [2, 5], [6, 10]]  # BOS -> (0, 0)
    assert (out.offsets[~out.mask] == 0).all()


def test_max_length_truncates_and_keeps_bos(llama_dir: Path) -> None:
    encoder = load_language_encoder(llama_dir, layer=-1, max_length=5)
    out = encoder.encode(TEXTS)
    assert out.features.shape[1] == 5 and out.mask.sum(1).tolist() == [4, 5, 4]
    assert out.offsets[1, -1].tolist() == [16, 17]  # BOS + "two people walk a"


def test_half_precision_returns_float32(llama_dir: Path) -> None:
    full = load_language_encoder(llama_dir, layer=-2).encode(TEXTS)
    encoder = load_language_encoder(llama_dir, layer=-2, dtype="bf16")
    assert next(encoder.model.parameters()).dtype == torch.bfloat16
    out = encoder.encode(TEXTS)
    assert out.features.dtype == torch.float32 and out.sentence.dtype == torch.float32
    torch.testing.assert_close(out.features, full.features, atol=0.1, rtol=0.1)
    assert encoder.cache_key != load_language_encoder(llama_dir, layer=-2).cache_key


def test_frozen_and_kept_in_eval(llama_dir: Path) -> None:
    encoder = load_language_encoder(llama_dir, layer=-1)
    encoder.train()
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert "layer=-1" in encoder.cache_key and encoder.dim == 32


def test_causal_lm_checkpoint_loads_as_base_model(tmp_path: Path, llama_dir: Path) -> None:
    from transformers import AutoModel, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(llama_dir)
    lm = LlamaForCausalLM(config)
    lm.model.load_state_dict(AutoModel.from_pretrained(llama_dir).state_dict())
    lm.save_pretrained(tmp_path / "lm")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "lm" / name).write_bytes((llama_dir / name).read_bytes())
    a = load_language_encoder(tmp_path / "lm", layer=-2).encode(TEXTS)
    b = load_language_encoder(llama_dir, layer=-2).encode(TEXTS)
    torch.testing.assert_close(a.features, b.features)


def test_clip_text_tower_sentence_is_eot(clip_dir: Path) -> None:
    from transformers import CLIPTextModel

    encoder = load_language_encoder(clip_dir)
    out = encoder.encode(TEXTS)
    lengths = out.mask.sum(1)
    assert lengths.tolist() == [5, 11, 5]  # SOT + words + EOT
    rows = torch.arange(3)
    torch.testing.assert_close(out.sentence, out.features[rows, lengths - 1])
    model = CLIPTextModel.from_pretrained(clip_dir, local_files_only=True).eval()
    ids = encoder.tokenizer(TEXTS, padding="longest", return_tensors="pt")
    with torch.no_grad():
        reference = model(**ids).last_hidden_state
    torch.testing.assert_close(out.features, reference * out.mask[..., None])
    with pytest.raises(ValueError, match="layer selection applies to causal LMs"):
        load_language_encoder(clip_dir, layer=-2)


def test_empty_text_and_wrong_model_type(tmp_path: Path, llama_dir: Path) -> None:
    encoder = load_language_encoder(llama_dir, layer=-1)
    with pytest.raises(ValueError, match=r"texts\[1\]: empty text"):
        encoder.encode(["a dog", "  "])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' is not a supported language encoder"):
        load_language_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        load_language_encoder(llama_dir.parent)
