"""Parity with the official FIND code, without it: golden outputs of the official modules.

``tests/fixtures/parity/find_unicl_small.safetensors`` was written by
``tools/parity_official.py --official FIND --golden tests/fixtures/parity`` (official commit
521c934, shrunk ``focalt_unicl_lang``: width 64, 3 decoder layers, 8 proposals, a 2-layer UniCL
text tower over the shipped CLIP BPE tokenizer, random backbone features at 64x64). It holds the
official state dict, the inputs and the official outputs of generic segmentation, grounding,
interactive segmentation, retrieval and interleaved segmentation / retrieval. Here the state
dict goes through the strict converter into findvl and every output must agree to 1e-4
relative; switching any released convention back to findvl's own visibly changes the outputs
it governs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import parity_findvl  # noqa: E402

from findvl.build import shipped_path  # noqa: E402
from findvl.convert.official import convert_state_dict  # noqa: E402
from findvl.model.conventions import OFFICIAL  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "parity" / "find_unicl_small.safetensors"
TOKENIZER = shipped_path("synth-clip-text")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(FIXTURE), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    tensors = load_file(str(FIXTURE))

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    return meta, part("weights."), part("features."), part("official.")


@pytest.fixture(scope="module")
def model(golden):
    meta, weights, features, _ = golden
    torch.manual_seed(0)
    return parity_findvl.converted_small_model(meta, weights, features, TOKENIZER)


def _inputs(meta: dict) -> dict:
    prompts = parity_findvl.prompts_for(meta["size"], meta["size"])
    return {**meta["inputs"], "prompts": prompts, "interleave": prompts[1]}


def _run(model, meta) -> dict[str, torch.Tensor]:
    size = meta["size"]
    return parity_findvl.run_tasks(model, parity_findvl.image_of(size, size), _inputs(meta))


def test_every_output_matches_the_official_code(golden, model) -> None:
    meta, _, _, official = golden
    table = parity_findvl.differences(official, _run(model, meta))
    assert set(table) == {
        "generic.logits", "generic.masks", "generic.class_embeddings", "grounding.scores",
        "grounding.masks", "interactive.scores", "interactive.masks", "retrieval.image",
        "retrieval.caption", "interleave.scores", "interleave.masks", "interleave.legend",
        "interleave.image",
    }  # fmt: skip
    worst = {k: rel for k, (_, rel) in table.items() if rel > TOLERANCE}
    assert not worst, f"relative differences above {TOLERANCE}: {worst}"


@pytest.mark.parametrize(
    ("field", "findvl_value", "changed"),
    [
        (
            "point_convention",
            "center",
            {"interactive.scores", "interactive.masks", "interleave.scores", "interleave.legend"},
        ),
        ("class_prompt", "name", {"generic.logits", "generic.class_embeddings"}),
        ("grounding_scale_cap", None, {"grounding.scores"}),
    ],
)
def test_findvl_conventions_change_what_they_govern(golden, model, field, findvl_value, changed):
    meta, _, _, official = golden
    model.conventions = dataclasses.replace(OFFICIAL, **{field: findvl_value})
    try:
        table = parity_findvl.differences(official, _run(model, meta))
    finally:
        model.conventions = dataclasses.replace(OFFICIAL)
    off = {k for k, (_, rel) in table.items() if rel > 1e-2}
    assert changed <= off
    assert not {k for k in off - changed if not k.endswith("masks")}


def test_the_converter_names_every_problem(golden, model) -> None:
    _, weights, _, _ = golden
    broken = dict(weights)
    del broken["sem_seg_head.predictor.query_feat.weight"]
    broken["sem_seg_head.predictor.unknown_table"] = torch.zeros(3)
    broken["sem_seg_head.predictor.level_embed.weight"] = torch.zeros(4, 64)
    with pytest.raises(ValueError) as info:
        convert_state_dict(broken, model, external_language=False, source="ckpt.pt")
    message = str(info.value)
    assert "\n" not in message and message.startswith("ckpt.pt: ")
    assert "sem_seg_head.predictor.unknown_table" in message
    assert "level_embed.weight: checkpoint (4, 64) vs model (3, 64)" in message
    assert "interface.query_feat.weight" in message  # named as the model tensor left unfilled


def test_ignored_and_external_language_keys(golden, model) -> None:
    _, weights, _, _ = golden
    conversion = convert_state_dict(weights, model, external_language=False)
    assert conversion.ignored == {
        "criterion.empty_weight": "training loss buffer (no-object class weight)"
    }
    assert len(conversion.renamed) == len(weights) - 1
    renamed = conversion.renamed
    assert renamed["sem_seg_head.predictor.mask_sptial_embed.1"] == "interface.mask_spatial_embed.1"
    assert (
        renamed["sem_seg_head.predictor.content_attention.layers.2.norm.weight"]
        == "interface.content_attention.2.norm.weight"
    )
    assert renamed["sem_seg_head.predictor.lang_encoder.lang_proj"] == "lang_proj"
    # with the language model read from its own directory, its weights are ignored, not loaded
    external = convert_state_dict(weights, model, external_language=True)
    assert not any(k.startswith("language.") for k in external.tensors)
    assert any("--language directory" in r for r in external.ignored.values())
