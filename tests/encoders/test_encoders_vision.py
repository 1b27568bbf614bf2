"""Hugging Face vision adapters: shapes, strides, preprocessing, freezing, loader errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from findvl.encoders.hf_vision import resample_to_patch_grid, tokens_to_grid
from findvl.encoders.loading import load_vision_encoder
from findvl.encoders.preprocess import IMAGENET_MEAN, preprocess_images

# model type -> writer of the tiny_hf fixture
WRITERS = {
    "sam": "sam",
    "sam_vision_model": "sam_vision",
    "dinov2": "dinov2",
    "clip_vision_model": "clip_vision",
    "clip": "clip",
}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_hf) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision")
    return {name: getattr(tiny_hf, writer)(root / name) for name, writer in WRITERS.items()}


@pytest.fixture(autouse=True)
def _hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.mark.parametrize("model_type", list(WRITERS))
@pytest.mark.parametrize("size", [(64, 64), (32, 96)])
def test_levels_shapes_and_strides(model_dirs, model_type: str, size: tuple[int, int]) -> None:
    encoder = load_vision_encoder(model_dirs[model_type], out_channels=16)
    assert encoder.model_type == model_type
    assert [(lv.name, lv.stride, lv.channels) for lv in encoder.levels] == [
        ("res2", 4, 16), ("res3", 8, 16), ("res4", 16, 16), ("res5", 32, 16),
    ]  # fmt: skip
    out = encoder.forward_features(torch.randn(2, 3, *size))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for level in encoder.levels:
        feature = out[level.name]
        assert feature.shape == (2, 16, size[0] // level.stride, size[1] // level.stride)
        assert feature.dtype == torch.float32 and torch.isfinite(feature).all()


def test_batched_equals_single(model_dirs) -> None:
    encoder = load_vision_encoder(model_dirs["dinov2"], out_channels=16).eval()
    pixels = torch.randn(2, 3, 64, 64)
    batched = encoder.forward_features(pixels)["res3"]
    single = encoder.forward_features(pixels[1:])["res3"]
    torch.testing.assert_close(batched[1:], single, atol=1e-5, rtol=1e-5)


def test_image_norm_from_preprocessor_config_and_family_defaults(model_dirs) -> None:
    dino = load_vision_encoder(model_dirs["dinov2"])
    assert dino.norm.mean == pytest.approx((127.5,) * 3)
    assert dino.norm.std == pytest.approx((63.75,) * 3)
    sam = load_vision_encoder(model_dirs["sam"])
    assert sam.norm.mean == IMAGENET_MEAN and sam.norm.longest_side == 64  # config.image_size
    clip = load_vision_encoder(model_dirs["clip"], longest_side=320)
    assert clip.norm.mean[0] == pytest.approx(0.48145466 * 255) and clip.norm.longest_side == 320


def test_preprocessed_batch_runs_through_sam(model_dirs) -> None:
    encoder = load_vision_encoder(model_dirs["sam"], out_channels=16)
    image = torch.randint(0, 256, (3, 40, 20), dtype=torch.uint8)
    batch = preprocess_images([image], encoder.norm)
    assert batch.pixels.shape == (1, 3, 64, 32) and batch.sizes == [(64, 32)]
    assert encoder.forward_features(batch.pixels)["res4"].shape == (1, 16, 4, 2)


def test_sam_grid_is_the_crop_of_the_native_square(model_dirs) -> None:
    encoder = load_vision_encoder(model_dirs["sam"])
    square = torch.randn(1, 3, 64, 64)
    square[..., 32:, :] = 0  # what the adapter pads with
    full = encoder.grid(square)
    torch.testing.assert_close(encoder.grid(square[..., :32, :]), full[..., :2, :])


def test_patch_grid_resampling_maps_patches_to_stride_16() -> None:
    pixels = torch.randn(1, 3, 64, 96)
    assert resample_to_patch_grid(pixels, 14).shape[-2:] == (56, 84)
    assert resample_to_patch_grid(pixels, 16) is pixels
    tokens = torch.randn(1, 1 + 4 + 6, 5)  # CLS, 4 registers, a 2x3 grid of patches
    grid = tokens_to_grid(tokens, 2, 3)
    assert grid.shape == (1, 5, 2, 3)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(grid[0, :, i, j], tokens[0, 5 + 3 * i + j])


@pytest.mark.parametrize("model_type", ["sam", "dinov2", "clip_vision_model"])
def test_backbone_frozen_pyramid_trainable(model_dirs, model_type: str) -> None:
    encoder = load_vision_encoder(model_dirs[model_type], out_channels=16)
    encoder.train()
    assert not encoder.backbone.training and encoder.pyramid.training
    out = encoder.forward_features(torch.randn(1, 3, 64, 64))
    sum(feature.square().mean() for feature in out.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in encoder.backbone.parameters())
    pyramid = list(encoder.pyramid.parameters())
    assert pyramid and all(p.grad is not None and p.grad.abs().sum() > 0 for p in pyramid)


def test_bf16_backbone_returns_float32(model_dirs) -> None:
    encoder = load_vision_encoder(model_dirs["dinov2"], dtype="bf16", out_channels=16)
    assert next(encoder.backbone.parameters()).dtype == torch.bfloat16
    assert encoder.forward_features(torch.randn(1, 3, 32, 32))["res2"].dtype == torch.float32


def test_pixels_not_multiple_of_32_rejected(model_dirs) -> None:
    encoder = load_vision_encoder(model_dirs["dinov2"])
    with pytest.raises(ValueError, match="multiples of 32, got 40x64"):
        encoder.forward_features(torch.randn(1, 3, 40, 64))


def test_loader_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"not found: {missing}"):
        load_vision_encoder(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"no config.json in {empty}"):
        load_vision_encoder(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="malformed JSON"):
        load_vision_encoder(empty)
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' is not a supported vision encoder .*sam, "):
        load_vision_encoder(empty)
    (empty / "config.json").write_text(json.dumps({"model_type": "sam"}))
    with pytest.raises(OSError):  # no weights: transformers fails, nothing downloaded
        load_vision_encoder(empty)
