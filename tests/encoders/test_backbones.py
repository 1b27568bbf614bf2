"""Official FIND backbones: golden parity fixtures, real-size shapes and names, the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from findvl.encoders.backbones import (
    BACKBONES,
    CONFIG_BACKBONE,
    DaViT,
    FocalNet,
    SamViT,
    build_backbone,
)
from findvl.encoders.official_vision import OfficialVisionEncoder, build_official_vision
from findvl.encoders.pixel_decoder import PixelDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "backbones"
FAMILIES = {"FocalNet": FocalNet, "DaViT": DaViT, "SamViT": SamViT}
LEVELS = ["res2", "res3", "res4", "res5"]
# the official output widths of res2..res5 (D2FocalNet / D2DaViT / D2ViT ``output_shape``)
OFFICIAL_CHANNELS = {
    "focalt": [96, 192, 384, 768],
    "focall": [192, 384, 768, 1536],
    "davitd3": [128, 256, 512, 1024],
    "davitd5": [256, 512, 1024, 2048],
    "samb": [128, 256, 512, 1024],
}


def load_fixture(name: str) -> tuple[torch.nn.Module, torch.Tensor, dict, dict]:
    """``(findvl module built from the fixture's metadata, input, weights, official outputs)``."""
    with safe_open(str(FIXTURES / f"{name}.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(meta["kwargs"]).items()
    }
    module = FAMILIES[meta["family"]](**kwargs).eval()
    weights = {k[7:]: v.float() for k, v in tensors.items() if k.startswith("weight.")}
    outputs = {k[7:]: v for k, v in tensors.items() if k.startswith("output.")}
    return module, tensors["input"].float(), weights, outputs


def shrunk(name: str) -> torch.nn.Module:
    """A shrunk backbone with the fixture's (official) weights loaded."""
    module, _, weights, _ = load_fixture(name)
    module.load_state_dict(weights, strict=True)
    return module


@pytest.mark.parametrize("name", list(BACKBONES))
def test_reproduces_official_outputs(name: str) -> None:
    module, pixels, weights, expected = load_fixture(name)
    assert sorted(module.state_dict()) == sorted(weights)  # official key names, 1:1
    module.load_state_dict(weights, strict=True)
    with torch.no_grad():
        out = module(pixels)
    assert list(out) == LEVELS == list(expected)
    for level in LEVELS:
        ref = expected[level]
        assert out[level].shape == ref.shape
        err = (out[level] - ref).abs().max() / ref.abs().max()
        assert err <= 1e-5, f"{name} {level}: relative difference {err:.2e}"


def test_fixture_detects_a_changed_weight() -> None:
    module, pixels, weights, expected = load_fixture("focalt")
    weights["layers.2.blocks.1.modulation.focal_layers.2.0.weight"] += 0.1
    module.load_state_dict(weights)
    with torch.no_grad():
        out = module(pixels)
    assert (out["res4"] - expected["res4"]).abs().max() > 1e-3


def materialised(name: str) -> torch.nn.Module:
    """The released-size backbone, built on meta and then allocated (no init cost)."""
    with torch.device("meta"):
        backbone = BACKBONES[name]()
    return backbone.to_empty(device="cpu").eval()  # uninitialised: for shapes only


def check_levels(backbone, out: dict, size: tuple[int, int], name: str, batch: int) -> None:
    assert list(backbone.out_strides.values()) == [4, 8, 16, 32]
    assert list(backbone.out_channels.values()) == OFFICIAL_CHANNELS[name]
    assert list(out) == LEVELS
    for level in LEVELS:
        s, c = backbone.out_strides[level], backbone.out_channels[level]
        assert out[level].shape == (batch, c, size[0] // s, size[1] // s)


@pytest.mark.parametrize("name", ["focalt", "focall", "davitd3", "davitd5"])
def test_real_size_shapes_and_strides(name: str) -> None:
    backbone = materialised(name)
    with torch.no_grad():
        out = backbone(torch.zeros(2, 3, 32, 64))
    check_levels(backbone, out, (32, 64), name, 2)


def test_sam_real_size_parts_shapes() -> None:
    backbone = materialised("samb")
    assert backbone.input_size == 1024 and backbone.size_divisibility == 1024
    with torch.no_grad():
        tokens = backbone.patch_embed(torch.zeros(1, 3, 1024, 1024))
        assert tokens.shape == backbone.pos_embed.shape == (1, 64, 64, 768)
        grid = torch.randn(1, 6, 16, 768)  # windowed (padded to 14x28) and global blocks
        assert backbone.blocks[0](grid).shape == backbone.blocks[2](grid).shape == grid.shape
        out = backbone.neck(torch.zeros(1, 768, 8, 10))  # the grid of a 128x160 image
    check_levels(backbone, out, (128, 160), "samb", 1)
    with pytest.raises(ValueError, match="takes 1024x1024 images, got 512x1024"):
        backbone(torch.zeros(1, 3, 512, 1024))


@pytest.mark.slow
def test_sam_real_size_full_forward() -> None:
    backbone = materialised("samb")
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 1024, 1024))
    check_levels(backbone, out, (1024, 1024), "samb", 1)


def test_real_size_parameter_names_and_shapes() -> None:
    with torch.device("meta"):
        params = {name: dict(BACKBONES[name]().state_dict()) for name in BACKBONES}
    focalt, focall, d3, d5, sam = (params[n] for n in BACKBONES)
    assert focalt["layers.0.blocks.0.dw1.weight"].shape == (96, 1, 3, 3)
    assert focalt["layers.2.blocks.5.modulation.f.weight"].shape == (2 * 384 + 4, 384)
    assert focalt["layers.0.downsample.proj.weight"].shape == (192, 96, 3, 3)
    assert (
        focalt["norm3.weight"].shape == (768,) and "layers.3.downsample.proj.weight" not in focalt
    )
    assert not any(".dw1." in k for k in focall)
    assert focall["layers.2.blocks.17.modulation.focal_layers.3.0.weight"].shape == (768, 1, 9, 9)
    assert focall["layers.0.blocks.0.gamma_1"].shape == (192,)
    assert d3["convs.1.proj.weight"].shape == (256, 128, 2, 2)
    assert d3["convs.1.norm.weight"].shape == (128,)  # pre-norm on the input channels
    assert d5["convs.1.proj.weight"].shape == (512, 256, 3, 3)
    assert d3["blocks.2.8.channel_block.channel_attn.fn.qkv.weight"].shape == (1536, 512)
    assert d3["blocks.0.0.spatial_block.ffn.fn.net.fc2.weight"].shape == (128, 512)
    assert d3["blocks.0.0.spatial_block.conv1.fn.dw.weight"].shape == (128, 1, 3, 3)
    assert sam["pos_embed"].shape == (1, 64, 64, 768)
    assert sam["blocks.0.attn.rel_pos_h"].shape == (27, 64)  # windowed (14)
    assert sam["blocks.2.attn.rel_pos_w"].shape == (127, 64)  # global
    assert sam["neck.down_4.3.weight"].shape == (384, 192, 2, 2)
    assert sam["neck.down_32.0.weight"].shape == (1536, 768, 2, 2)
    assert not any(k.startswith("neck.0") for k in sam)  # SAM's own neck is replaced


def test_focal_tiny_runs_for_real_on_a_small_image() -> None:
    torch.manual_seed(0)
    backbone = BACKBONES["focalt"]().eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(v.shape) for v in out.values()] == [
        (1, 96, 16, 16), (1, 192, 8, 8), (1, 384, 4, 4), (1, 768, 2, 2),
    ]  # fmt: skip
    assert all(torch.isfinite(v).all() for v in out.values())


def test_registry_and_config_table() -> None:
    assert set(CONFIG_BACKBONE.values()) == set(BACKBONES)
    assert len(CONFIG_BACKBONE) == 10
    with pytest.raises(ValueError, match="backbone 'focal-x'"):
        build_backbone("focal-x")


@pytest.mark.parametrize("name", ["davitd3", "focall"])
def test_batched_equals_single(name: str) -> None:
    module, pixels, _, _ = load_fixture(name)
    module = shrunk(name)
    with torch.no_grad():
        both = module(pixels)
        one = module(pixels[1:])
    for level in LEVELS:
        torch.testing.assert_close(both[level][1:], one[level], rtol=1e-4, atol=1e-5)


def test_adapter_levels_names_and_freezing() -> None:
    encoder = OfficialVisionEncoder(backbone=shrunk("focalt"), name="focalt")
    assert encoder.model_type == "focalt"
    assert [(lv.name, lv.stride, lv.channels) for lv in encoder.levels] == [
        ("res2", 4, 4), ("res3", 8, 8), ("res4", 16, 16), ("res5", 32, 32),
    ]  # fmt: skip
    assert all(k.startswith("backbone.") for k in encoder.state_dict())
    assert encoder.norm.pad_multiple == 32 and encoder.norm.mean[0] == 123.675
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.backbone.training
    pixels = torch.randn(1, 3, 32, 64, requires_grad=True)
    out = encoder.forward_features(pixels)
    assert not out["res2"].requires_grad
    with pytest.raises(ValueError, match="multiples of 32"):
        encoder.forward_features(torch.randn(1, 3, 40, 64))


def test_adapter_trainable_backbone_gets_gradients() -> None:
    encoder = OfficialVisionEncoder(backbone=shrunk("davitd3"), name="davitd3", trainable=True)
    encoder.train()
    assert encoder.backbone.training
    out = encoder.forward_features(torch.randn(1, 3, 32, 32))
    sum(v.square().mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_adapter_pads_sam_to_its_input_and_crops_back() -> None:
    backbone = shrunk("samb")  # input 64x64, patch 8: strides 2/4/8/16
    encoder = OfficialVisionEncoder(backbone=backbone, name="samb")
    assert encoder.norm.pad_multiple == 64
    pixels = torch.randn(1, 3, 32, 64)
    out = encoder.forward_features(pixels)
    with torch.no_grad():
        full = backbone(torch.nn.functional.pad(pixels, (0, 0, 0, 32)))
    for level, stride in backbone.out_strides.items():
        assert out[level].shape[-2:] == (32 // stride, 64 // stride)
        torch.testing.assert_close(out[level], full[level][..., : 32 // stride, :])
    with pytest.raises(ValueError, match="larger than the samb backbone's 64x64"):
        encoder.forward_features(torch.randn(1, 3, 96, 64))


def test_adapter_feeds_the_pixel_decoder() -> None:
    encoder = OfficialVisionEncoder(backbone=shrunk("davitd5"), name="davitd5")
    decoder = PixelDecoder(
        in_levels=encoder.levels, conv_dim=32, mask_dim=32, num_encoder_layers=1,
        num_heads=4, ffn_dim=64,
    )  # fmt: skip
    pixels = torch.randn(2, 3, 64, 64)
    out = decoder(encoder.forward_features(pixels), torch.ones(2, 64, 64, dtype=torch.bool))
    assert out.mask_features.shape == (2, 32, 16, 16)


def test_build_official_vision_is_frozen_at_released_size() -> None:
    with torch.device("meta"):
        encoder = build_official_vision("samb")
    assert encoder.norm.pad_multiple == 1024
    assert [lv.channels for lv in encoder.levels] == OFFICIAL_CHANNELS["samb"]
    assert not any(p.requires_grad for p in encoder.parameters())
