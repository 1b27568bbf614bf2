"""A full FindModel over every pair of tiny Hugging Face vision and language models."""

import pytest
import torch

from findvl.build import build_model, preset_config

VISION = ("sam", "dinov2", "clip_vision")  # writers of the tiny_hf fixture
LANGUAGE = ("llama", "clip")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_hf):
    root = tmp_path_factory.mktemp("hf")
    return {name: str(getattr(tiny_hf, name)(root / name)) for name in (*VISION, *LANGUAGE)}


@pytest.mark.parametrize("vision", sorted(VISION))
@pytest.mark.parametrize("language", sorted(LANGUAGE))
def test_forward_and_gradients_for_every_pair(model_dirs, vision, language, all_requests, images):
    torch.manual_seed(0)
    cfg = preset_config("find_tiny")
    cfg.vision.kind, cfg.vision.path, cfg.vision.pyramid_channels = "hf", model_dirs[vision], 32
    cfg.language.kind, cfg.language.path = "hf", model_dirs[language]
    cfg.language.layer = -1 if language == "llama" else None
    model = build_model(cfg)
    imgs = images([(64, 64), (48, 64)])
    out = model(imgs, all_requests(imgs), all_layer_masks=True)
    loss = (
        out.generic_segmentation.final.masks.mean()
        + out.interleave_segmentation.final.logits.mean()
    )
    loss = (
        loss
        + out.grounded_segmentation.final.logits.mean()
        + out.image_text_retrieval.final.query.mean()
    )
    loss.backward()
    assert torch.isfinite(out.grounded_segmentation.final.masks).all()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in model.parameters() if not p.requires_grad)
    # the language model and the pretrained vision backbone are frozen; lang_proj learns
    assert not any(p.requires_grad for p in model.language.parameters())
    assert model.lang_proj.grad is not None
    assert any(p.requires_grad for p in model.vision.parameters())  # the new pyramid


def test_text_cache_gives_identical_outputs(all_requests, images):
    torch.manual_seed(0)
    cfg = preset_config("find_tiny")
    cfg.language.trainable = False
    plain = build_model(cfg).eval()
    cfg.language.cache_entries = 64
    cached = build_model(cfg).eval()
    cached.load_state_dict(plain.state_dict(), strict=False)
    cached.language.encoder.load_state_dict(plain.language.state_dict())
    imgs = images([(64, 64)])
    with torch.no_grad():
        a = plain(imgs, all_requests(imgs))
        b1 = cached(imgs, all_requests(imgs))
        b2 = cached(imgs, all_requests(imgs))
    assert cached.language.stats.hits > 0
    for x in (b1, b2):
        torch.testing.assert_close(
            a.grounded_segmentation.final.logits,
            x.grounded_segmentation.final.logits,
            atol=1e-5,
            rtol=1e-5,
        )
        torch.testing.assert_close(
            a.image_text_retrieval.final.query,
            x.image_text_retrieval.final.query,
            atol=1e-5,
            rtol=1e-5,
        )
