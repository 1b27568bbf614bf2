"""The pixel-detail path: mask features finer than the encoder's stride-4 grid."""

import math

import pytest
import torch

from findvl.build import build_model, preset_config
from findvl.model.requests import GenericSegmentation


def _model(stride):
    torch.manual_seed(0)
    cfg = preset_config("find_tiny")
    cfg.pixel_decoder.mask_stride = stride
    return build_model(cfg)


@pytest.mark.parametrize("stride", [1, 2])
def test_masks_come_at_the_requested_stride_and_ignore_padding(stride, all_requests, images):
    model = _model(stride).eval()
    imgs = images([(64, 48), (40, 64)])
    with torch.no_grad():
        out = model(imgs, all_requests(imgs))
        masks = out.generic_segmentation.final.masks
        assert masks.shape[-2:] == (64 // stride, 64 // stride)
        # image 1 alone (smaller canvas) gives the same masks on its valid region
        single = model([imgs[1]], all_requests([imgs[1]]))
    one = single.generic_segmentation.final.masks[0]
    valid_h, valid_w = 40 // stride, 64 // stride
    torch.testing.assert_close(
        masks[1, :, :valid_h, :valid_w], one[:, :valid_h, :valid_w], atol=2e-4, rtol=1e-3
    )


def test_detail_path_is_trained(all_requests, images):
    model = _model(1).train()
    imgs = images([(64, 64)])
    out = model(imgs, all_requests(imgs))
    out.generic_segmentation.final.masks.square().mean().backward()
    grads = [p.grad for p in model.pixel_decoder.detail.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_stride_4_keeps_the_released_layout():
    names = {n for n, _ in _model(4).pixel_decoder.named_parameters()}
    assert "mask_features.weight" in names and not any(n.startswith("detail") for n in names)


def test_bad_stride_is_named():
    with pytest.raises(ValueError, match="mask_stride"):
        _model(3)


def test_quickstart_class_scores_start_at_clip_temperature(images):
    """At the official e^1 no class probability can pass the 0.8 object threshold; the
    quickstart model starts at CLIP's 1/0.07. A separate class temperature is an option."""
    cfg = preset_config("find_synth_vit")
    assert cfg.pixel_decoder.mask_stride < 4 and cfg.vision.finest_stride == 2
    model = build_model(cfg)
    # one octave finer than usual: the interface attends 4x4, 8x8, 16x16 cells at 64 px
    assert [level.stride for level in model.vision.levels] == [2, 4, 8, 16]
    # the ResNet reads 64 px images at 128: its stages are the same cells
    resnet = build_model(preset_config("find_synth"))
    assert [level.stride for level in resnet.vision.levels] == [4, 8, 16, 32]
    assert resnet.vision.norm.longest_side == 128 and resnet.config.pixel_decoder.mask_stride == 2
    assert math.isclose(resnet.class_scale().item(), 1 / 0.07, rel_tol=1e-5)
    assert math.isclose(model.class_scale().item(), 1 / 0.07, rel_tol=1e-5)
    cfg.language.logit_scale_init, cfg.language.class_logit_scale_init = 1.0, 2.0
    separate = build_model(cfg)
    assert separate.logit_scale.item() == 1.0
    assert math.isclose(separate.class_scale().item(), math.exp(2.0), rel_tol=1e-6)
    imgs = images([(64, 64)])
    with torch.no_grad():
        out = model(imgs, [GenericSegmentation(["circle", "water"])])
        cos = out.generic_segmentation.final.logits / model.class_scale()
    assert cos.abs().max() <= 1 + 1e-5  # scale x cosine
    tiny = build_model(preset_config("find_tiny"))
    assert tiny.class_logit_scale is None  # official: one shared temperature
    assert math.isclose(tiny.class_scale().item(), math.e, rel_tol=1e-6)


def test_pyramid_one_octave_finer():
    from findvl.encoders.pyramid import SimpleFeaturePyramid

    pyramid = SimpleFeaturePyramid(in_channels=16, out_channels=8, in_stride=4, finest_stride=2)
    assert [lv.stride for lv in pyramid.levels] == [2, 4, 8, 16]
    out = pyramid(torch.randn(1, 16, 16, 16))  # a 64-pixel image at stride 4
    assert [tuple(out[k].shape[-2:]) for k in ("res2", "res3", "res4", "res5")] == [
        (32, 32),
        (16, 16),
        (8, 8),
        (4, 4),
    ]
    with pytest.raises(ValueError, match="finest_stride"):
        SimpleFeaturePyramid(in_channels=16, in_stride=16, finest_stride=2)


@pytest.mark.parametrize("size", [(64, 48), (60, 60), (7, 5)])
def test_strided_downsample_equals_bilinear_interpolation(size):
    """The heads resize mask features to each attention level by strided slices where a side
    shrinks by an integer factor; every size equals ``interpolate`` (others go to it)."""
    from findvl.model.heads import bilinear_downsample

    torch.manual_seed(0)
    h, w = size
    x = torch.randn(2, 3, h, w)
    for oh in range(1, h + 1):
        for ow in sorted({1, 2, 3, max(1, w // 2), w}):
            ref = torch.nn.functional.interpolate(
                x, size=(oh, ow), mode="bilinear", align_corners=False
            )
            torch.testing.assert_close(bilinear_downsample(x, (oh, ow)), ref, atol=1e-6, rtol=0)
