"""Hierarchical Hugging Face backbones (RegNet, ResNet, ConvNeXt): their own maps are FIND's
levels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from findvl.encoders.hf_hierarchical import HierarchicalAdapter
from findvl.encoders.loading import load_vision_encoder
from findvl.encoders.pixel_decoder import PixelDecoder


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def save_regnet(directory: Path) -> Path:
    from transformers import RegNetConfig, RegNetModel

    torch.manual_seed(0)
    config = RegNetConfig(
        embedding_size=8, hidden_sizes=[16, 16, 32], depths=[1, 1, 1], groups_width=8,
        layer_type="x", downsample_in_first_stage=True,
    )  # fmt: skip
    RegNetModel(config).save_pretrained(directory)
    return directory


def save_resnet(directory: Path) -> Path:
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
        layer_type="basic", downsample_in_first_stage=False,
    )  # fmt: skip
    ResNetModel(config).save_pretrained(directory)
    return directory


def save_convnext(directory: Path) -> Path:
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(0)
    config = ConvNextConfig(patch_size=4, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1])
    ConvNextModel(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    ("save", "strides", "channels"),
    [
        (save_regnet, (2, 4, 8, 16), (8, 16, 16, 32)),
        (save_resnet, (4, 8, 16, 32), (8, 16, 16, 32)),  # the first stage, not the stem
        (save_convnext, (4, 8, 16, 32), (8, 16, 16, 32)),
    ],
)
def test_levels_are_the_backbones_own_maps(tmp_path: Path, save, strides, channels) -> None:
    encoder = load_vision_encoder(save(tmp_path / "model"), longest_side=64)
    assert isinstance(encoder, HierarchicalAdapter)
    assert tuple(level.stride for level in encoder.levels) == strides
    assert tuple(level.channels for level in encoder.levels) == channels
    pixels = torch.randn(2, 3, 64, 96)
    out = encoder.forward_features(pixels)
    for level in encoder.levels:
        assert out[level.name].shape == (2, level.channels, 64 // level.stride, 96 // level.stride)
    # the maps are the backbone's hidden states, untouched
    states = encoder.backbone(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert torch.equal(out["res5"], states[-1])
    # two different images give different features
    assert not torch.allclose(out["res3"][0], out["res3"][1])


def test_the_backbone_stays_frozen_in_eval_mode(tmp_path: Path) -> None:
    encoder = load_vision_encoder(save_regnet(tmp_path / "model"), longest_side=64)
    encoder.train()
    assert not encoder.backbone.training
    assert not any(p.requires_grad for p in encoder.parameters())
    before = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    encoder.forward_features(torch.randn(4, 3, 64, 64))
    after = encoder.backbone.state_dict()  # batch-norm statistics are not updated
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_pixel_decoder_reads_the_levels(tmp_path: Path) -> None:
    encoder = load_vision_encoder(save_regnet(tmp_path / "model"), longest_side=64)
    decoder = PixelDecoder(
        in_levels=encoder.levels, conv_dim=16, mask_dim=16, num_encoder_layers=1,
        num_heads=2, ffn_dim=32, mask_stride=1,
    )  # fmt: skip
    pixels = torch.randn(1, 3, 64, 64)
    valid = torch.ones(1, 64, 64, dtype=torch.bool)
    out = decoder(encoder.forward_features(pixels), valid, pixels)
    assert out.mask_features.shape[-2:] == (64, 64)
