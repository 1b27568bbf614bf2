"""Parity of the LLaMA text path with the official FIND encoder, without it: golden outputs.

``tests/fixtures/parity/llama_small.safetensors`` was written by ``tools/parity_llama.py
--official FIND --official-python PY --golden tests/fixtures/parity/llama_small.safetensors``
(official commit 521c934: ``modeling/language/llamaencoder.py`` and its vendored LLaMA, run
under ``transformers`` 4.34 with the ``focalt_llama_lang`` text settings). It holds a random
14-layer, 32-wide LLaMA with a word-level tokenizer, a random ``lang_proj`` and the official
outputs (token ids, attention mask, ``hidden_states[-12]`` at the valid tokens, their mean,
both after ``lang_proj``) for two batches, in fp32 and fp16. findvl reads the same checkpoint
as the released LLaMA preset does; its fp32 outputs must agree to 1e-4 relative.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import parity_llama  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "parity" / "llama_small.safetensors"
TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # fp16 rounding: the official fp16 outputs are 3.5e-3 from its own fp32
EXACT = ("input_ids", "mask")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("llama") / "tiny-llama"
    meta, lang_proj, official = parity_llama.read_golden(FIXTURE, directory)
    return meta, lang_proj, official, directory


def _rows(golden, batch: str, dtype: str, layer: int | None = None) -> dict[str, dict]:
    meta, lang_proj, official, directory = golden
    texts = meta["batches"][batch]
    ours = parity_llama.run_findvl(directory, lang_proj, dtype, texts, layer=layer)
    rows = parity_llama.compare(ours, parity_llama.part(official, f"{batch}.{dtype}"))
    return {row["output"]: row for row in rows}


def test_fixture_covers_truncation_and_short_padding(golden) -> None:
    meta, _, official, _ = golden
    assert set(meta["batches"]) == {"mixed", "short"}
    mixed, short = official["mixed.fp32.mask"], official["short.fp32.mask"]
    assert mixed.shape[1] == short.shape[1] == 77  # the official code pads to CONTEXT_LENGTH
    assert mixed.sum(1).max() == 77 and short.sum(1).max() < 77  # truncated caption / padding


@pytest.mark.parametrize("batch", ["mixed", "short"])
def test_fp32_matches_the_official_encoder(golden, batch: str) -> None:
    rows = _rows(golden, batch, "fp32")
    assert set(rows) == set(parity_llama.OUTPUTS)
    assert all("error" not in row for row in rows.values()), rows
    for name in EXACT:
        assert rows[name]["max_abs"] == 0, rows[name]
    worst = {k: r["max_rel"] for k, r in rows.items() if r["max_rel"] > TOLERANCE}
    assert not worst, f"relative differences above {TOLERANCE}: {worst}"


def test_fp16_agrees_to_half_precision(golden) -> None:
    rows = _rows(golden, "mixed", "fp16")
    for name in EXACT:
        assert rows[name]["max_abs"] == 0, rows[name]
    worst = {k: r["max_rel"] for k, r in rows.items() if r["max_rel"] > FP16_TOLERANCE}
    assert not worst, f"relative differences above {FP16_TOLERANCE}: {worst}"


@pytest.mark.parametrize("layer", [-11, -13])
def test_a_neighbouring_layer_does_not_match(golden, layer: int) -> None:
    rows = _rows(golden, "short", "fp32", layer=layer)
    assert rows["features"]["max_rel"] > 100 * TOLERANCE
    assert rows["class_emb"]["max_rel"] > 100 * TOLERANCE
