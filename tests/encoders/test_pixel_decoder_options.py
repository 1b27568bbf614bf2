"""The pixel decoder's options that bring finer detail to the levels the interface attends."""

from __future__ import annotations

import torch

from findvl.build import build_model
from findvl.encoders.pixel_decoder import PixelDecoder
from findvl.encoders.vision import FeatureLevel
from findvl.presets import preset_config

LEVELS = tuple(FeatureLevel(f"res{i + 2}", 2 ** (i + 2), c) for i, c in enumerate((8, 16, 24, 32)))


def _decoder(bottom_up: bool) -> PixelDecoder:
    torch.manual_seed(0)
    return PixelDecoder(
        in_levels=LEVELS, conv_dim=16, mask_dim=16, num_encoder_layers=1, num_heads=2,
        ffn_dim=32, bottom_up=bottom_up,
    ).eval()  # fmt: skip


def _features(size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        lv.name: torch.randn(2, lv.channels, size // lv.stride, size // lv.stride, generator=g)
        for lv in LEVELS
    }


def test_bottom_up_carries_res2_into_every_attended_level() -> None:
    size = 64
    features = _features(size)
    changed = dict(features, res2=features["res2"] + torch.randn_like(features["res2"]))
    valid = torch.ones(2, size, size, dtype=torch.bool)
    for bottom_up, expect_change in ((False, False), (True, True)):
        decoder = _decoder(bottom_up)
        with torch.no_grad():
            a, b = decoder(features, valid), decoder(changed, valid)
        assert [tuple(x.shape[-2:]) for x in a.levels] == [(2, 2), (4, 4), (8, 8)]
        for x, y in zip(a.levels, b.levels):  # strides 32, 16, 8
            assert (not torch.allclose(x, y)) == expect_change
        assert a.mask_features.shape == (2, 16, 16, 16)


def test_bottom_up_is_off_in_the_released_design_and_adds_only_its_convs() -> None:
    plain, panet = _decoder(False), _decoder(True)
    assert len(plain.bottom_up) == 0 and len(panet.bottom_up) == 3
    extra = set(panet.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("bottom_up.") for k in extra)
    assert not preset_config("find_tiny").pixel_decoder.bottom_up


def test_bottom_up_handles_odd_sized_levels() -> None:
    decoder = _decoder(True)
    features = {
        "res2": torch.randn(1, 8, 13, 9),
        "res3": torch.randn(1, 16, 7, 5),
        "res4": torch.randn(1, 24, 4, 3),
        "res5": torch.randn(1, 32, 2, 2),
    }
    with torch.no_grad():
        out = decoder(features, torch.ones(1, 52, 36, dtype=torch.bool))
    assert [tuple(x.shape[-2:]) for x in out.levels] == [(2, 2), (4, 3), (7, 5)]


def test_bottom_up_is_set_from_the_model_config() -> None:
    cfg = preset_config("find_tiny")
    cfg.pixel_decoder.bottom_up = True
    model = build_model(cfg)
    assert len(model.pixel_decoder.bottom_up) == 3


def test_attend_finest_gives_the_interface_the_three_finest_outputs() -> None:
    features = _features(64)
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    torch.manual_seed(0)
    coarse = PixelDecoder(
        in_levels=LEVELS, conv_dim=16, mask_dim=16, num_encoder_layers=1, num_heads=2, ffn_dim=32
    ).eval()
    torch.manual_seed(0)
    fine = PixelDecoder(
        in_levels=LEVELS, conv_dim=16, mask_dim=16, num_encoder_layers=1, num_heads=2,
        ffn_dim=32, attend_finest=True,
    ).eval()  # fmt: skip
    assert set(coarse.state_dict()) == set(fine.state_dict())  # the same weights
    with torch.no_grad():
        a, b = coarse(features, valid), fine(features, valid)
    assert [tuple(x.shape[-2:]) for x in b.levels] == [(4, 4), (8, 8), (16, 16)]
    assert [tuple(v.shape[-2:]) for v in b.valid] == [(4, 4), (8, 8), (16, 16)]
    torch.testing.assert_close(b.levels[:2], a.levels[1:])
    torch.testing.assert_close(b.mask_features, a.mask_features)


def test_attend_finest_is_set_from_the_model_config() -> None:
    cfg = preset_config("find_tiny")
    cfg.pixel_decoder.attend_finest = True
    model = build_model(cfg)
    assert model.pixel_decoder.attended == slice(1, 4)
