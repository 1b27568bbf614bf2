"""``findvl convert``: argument and file errors (one line, exit 2, nothing written) and, slow,
a released-size checkpoint converted end to end into a run that ``findvl segment`` loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from findvl.build import shipped_path
from findvl.cli import main
from findvl.convert.keys import findvl_key, official_key
from findvl.convert.official import read_official_checkpoint, resolve_config

TOKENIZER = shipped_path("synth-clip-text")


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("findvl convert: error: ")
    return err


def test_config_names(tmp_path: Path, capsys) -> None:
    assert resolve_config("focalt_llama_lang") == "find_focalt"
    assert resolve_config("configs/find/samb_unicl_lang.yaml") == "find_samb_unicl"
    assert resolve_config("find_davitd5") == "find_davitd5"
    pt = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    err = _error(capsys, ["convert", str(pt), "--config", "focalt", "--out", str(tmp_path / "r")])
    assert "--config 'focalt'" in err and "focalt_unicl_lang" in err
    assert not (tmp_path / "r").exists()


def test_text_tower_directories_are_required(tmp_path: Path, capsys) -> None:
    pt = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    out = str(tmp_path / "r")
    err = _error(capsys, ["convert", str(pt), "--config", "focalt_unicl_lang", "--out", out])
    assert "--tokenizer" in err
    err = _error(capsys, ["convert", str(pt), "--config", "focalt_llama_lang", "--out", out])
    assert "--language" in err
    err = _error(
        capsys,
        ["convert", str(pt), "--config", "focalt_unicl_lang", "--out", out, "--tokenizer",
         str(tmp_path / "none")],
    )  # fmt: skip
    assert "no directory" in err
    assert not Path(out).exists()


def test_only_weights_are_read(tmp_path: Path, capsys) -> None:
    pickled = tmp_path / "code.pt"
    torch.save({"w": torch.zeros(1), "config": Path("x")}, pickled)  # needs unpickling code
    with pytest.raises(ValueError, match="not a readable weights-only file"):
        read_official_checkpoint(pickled)
    nested = tmp_path / "nested.pt"
    torch.save({"model": {"module.backbone.x": torch.ones(2)}}, nested)
    assert list(read_official_checkpoint(nested)) == ["backbone.x"]
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep").write_text("x")
    err = _error(
        capsys,
        ["convert", str(nested), "--config", "focalt_unicl_lang", "--out", str(out),
         "--tokenizer", TOKENIZER],
    )  # fmt: skip
    assert "exists and is not an empty directory" in err
    err = _error(capsys, ["convert", str(tmp_path / "missing.pt"), "--config", "find_samb_unicl",
                          "--out", str(tmp_path / "r2"), "--tokenizer", TOKENIZER])  # fmt: skip
    assert "missing.pt" in err


def test_official_key_inverts_findvl_key() -> None:
    for key in (
        "sem_seg_head.predictor.content_attention.layers.8.multihead_attn.in_proj_weight",
        "sem_seg_head.predictor.condition_attention.layers.0.norm.bias",
        "sem_seg_head.predictor.mask_sptial_embed.2",
        "sem_seg_head.predictor.class_embed",
        "sem_seg_head.predictor.lang_encoder.lang_proj",
        "sem_seg_head.predictor.lang_encoder.lang_encoder.ln_final.weight",
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.norm2.weight",
        "backbone.layers.2.blocks.0.modulation.f.weight",
    ):
        assert official_key(findvl_key(key)) == key
    assert official_key("text_shift") is None


@pytest.mark.slow
def test_released_size_checkpoint_converts_and_segments(tmp_path: Path, capsys) -> None:
    """Focal-T + UniCL at the released size: random official-format weights -> run -> segment."""
    from PIL import Image

    from findvl.build import build_model, preset_config
    from findvl.runs import load_run

    config = preset_config("find_focalt_unicl")
    config = dataclasses.replace(
        config, language=dataclasses.replace(config.language, path=TOKENIZER)
    )
    torch.manual_seed(1)
    source = build_model(config)
    state = {official_key(k): v for k, v in source.state_dict().items() if official_key(k)}
    state["criterion.empty_weight"] = torch.ones(134)
    pt = tmp_path / "find_focalt_unicl.pt"
    torch.save(state, pt)
    run = tmp_path / "run"
    argv = ["convert", str(pt), "--config", "focalt_unicl_lang", "--out", str(run),
            "--tokenizer", TOKENIZER]  # fmt: skip
    assert main(argv) == 0
    assert "1 ignored" in capsys.readouterr().out
    loaded = load_run(run)
    assert loaded.class_names[0] == "person" and len(loaded.class_names) == 133
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    image = tmp_path / "image.png"
    Image.fromarray((torch.rand(64, 96, 3) * 255).byte().numpy()).save(image)
    assert main(["segment", str(image), "--checkpoint", str(run), "--out",
                 str(tmp_path / "seg.png"), "--classes", "person", "sky"]) == 0  # fmt: skip


@pytest.mark.slow
def test_llama_config_links_the_language_model(tmp_path: Path, tiny_hf) -> None:
    """A LLaMA config: the LLM is not converted nor copied; the run links it and loads it."""

    from findvl.build import preset_config
    from findvl.convert.run import build_for_conversion, convert_checkpoint
    from findvl.runs import load_run

    llama = tiny_hf.llama(tmp_path / "llama", num_layers=12)
    config = preset_config("find_focalt")
    language = dataclasses.replace(config.language, path=str(llama))
    config = dataclasses.replace(config, language=language)
    torch.manual_seed(2)
    source = build_for_conversion(config)
    state = {
        official_key(k): v
        for k, v in source.state_dict().items()
        if official_key(k) and not k.startswith("language.")
    }
    state["sem_seg_head.predictor.lang_encoder.lang_encoder.model.norm.weight"] = torch.ones(4)
    torch.save(state, tmp_path / "find_focalt.pt")
    result = convert_checkpoint(
        tmp_path / "find_focalt.pt", config="focalt_llama_lang", out=tmp_path / "run",
        language=str(llama),
    )  # fmt: skip
    assert (tmp_path / "run" / "language").resolve() == llama.resolve()
    assert any("--language directory" in r for r in result.ignored.values())
    loaded = load_run(tmp_path / "run").model
    assert loaded.language.layer == -12 and loaded.lang_proj.shape == (loaded.language.dim, 512)
    torch.testing.assert_close(loaded.lang_proj, source.lang_proj)
    from findvl.model_file import read_foundations

    found = read_foundations(result.checkpoint)  # the LLaMA: by its path and weights' hash
    assert [(f["field"], f["path"]) for f in found] == [("language.path", "language")]
    other = tiny_hf.llama(tmp_path / "other", num_layers=12, seed=1)
    with pytest.raises(ValueError, match=r"language\.path .*other: its weights"):
        load_run(tmp_path / "run", language_path=str(other))
