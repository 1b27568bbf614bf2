"""Config values as types: enumerated fields are Literals checked when a model is built; presets
are plain data; building a preset leaves torch's global random state alone."""

import subprocess
import sys

import pytest
import torch

from findvl.build import build_model, build_preset
from findvl.config import ModelConfig, apply_overrides, from_dict
from findvl.presets import PRESETS, find_synth_config, find_tiny_config


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("interface", "variant", "oficial"),
        ("interface", "pixel_scores", "cos"),
        ("vision", "kind", "timm"),
        ("language", "dtype", "fp8"),
        ("conventions", "point_convention", "corner"),
        ("conventions", "class_prompt", "long"),
    ],
)
def test_a_bad_choice_fails_at_build_in_one_line(section, key, value):
    config = find_tiny_config()
    setattr(getattr(config, section), key, value)
    with pytest.raises(ValueError) as error:
        build_model(config)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{section}.{key}={value!r}: expected one of")


def test_choices_are_checked_when_a_config_is_read():
    with pytest.raises(ValueError, match=r"'interface.variant': expected one of \['official', "):
        apply_overrides(find_tiny_config(), ["interface.variant=oficial"])
    with pytest.raises(ValueError, match="'vision.backbone': expected one of"):
        from_dict(ModelConfig, {"vision": {"backbone": "resnet"}})
    loaded = from_dict(
        ModelConfig, {"interface": {"variant": "paper"}, "vision": {"backbone": None}}
    )
    assert loaded.interface.variant == "paper" and loaded.validate() is loaded


def test_validate_checks_parts_fit_together():
    config = find_tiny_config()
    config.pixel_decoder.conv_dim = 32
    with pytest.raises(ValueError, match="pixel_decoder.conv_dim=32 must equal"):
        config.validate()
    config = find_synth_config()
    config.interface.dim_proj = 32
    with pytest.raises(ValueError, match="interface.dim_proj=32 must equal"):
        config.validate()
    config = find_tiny_config()
    config.vision.kind = "official"
    with pytest.raises(ValueError, match="vision.backbone: required"):
        config.validate()
    for name, preset in PRESETS.items():
        assert preset().validate().preset == name


def test_build_preset_leaves_the_global_random_state_unchanged():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_preset("find_tiny", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_preset("find_tiny", seed=7)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name  # the seed still makes the weights repeatable
    c = build_preset("find_tiny", seed=8)
    assert not torch.equal(a.lang_proj, c.lang_proj)


def test_presets_are_plain_data_and_the_cli_lists_them(cli_env):
    code = (
        "import sys\n"
        "from findvl.cli import build_parser\n"
        "parser = build_parser()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env)
    assert out.stdout.strip() == "False", out.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "findvl", "train", "-h"], capture_output=True, text=True, env=cli_env
    ).stdout
    flat = " ".join(help_text.split())
    for name in PRESETS:
        assert name in flat
    bad = subprocess.run(
        [sys.executable, "-m", "findvl", "train", "--preset", "find_tiniest", "--data", ".",
         "--out", "x"],
        capture_output=True,
        text=True,
        env=cli_env,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "find_tiniest" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
