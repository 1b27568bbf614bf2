"""Where class embeddings come from: the interface's class pass (FIND) or the text (X-Decoder)."""

from __future__ import annotations

import torch

from findvl.build import build_model, preset_config
from findvl.model.requests import GenericSegmentation
from findvl.train.optim import param_groups

NAMES = ["circle", "square", "grass"]


def _model(**conventions):
    config = preset_config("find_tiny")
    for key, value in conventions.items():
        setattr(config.conventions, key, value)
    torch.manual_seed(0)
    return build_model(config).eval(), config


def test_text_class_table_is_the_projected_end_of_text_token(images) -> None:
    model, _ = _model(class_table="text")
    with torch.no_grad():
        table = model.class_embeddings(NAMES)
        text = model.encode_text([*NAMES, "background"])
    last = text.mask.sum(1) - 1
    assert table.shape == (len(NAMES) + 1, text.features.shape[-1])
    assert torch.equal(table, text.features[torch.arange(len(NAMES) + 1), last])
    out = model(images([(64, 64)]), [GenericSegmentation(NAMES)])
    assert out.generic_segmentation.final.logits.shape[-1] == len(NAMES) + 1


def test_text_class_table_follows_the_names_and_trains_through_the_text_path() -> None:
    model, _ = _model(class_table="text")
    model.train()
    table = model.class_embeddings(NAMES)
    assert not torch.allclose(table[0], table[1])
    table.square().sum().backward()
    assert model.lang_proj.grad is not None and model.lang_proj.grad.abs().sum() > 0
    interface_grads = [p.grad for p in model.interface.parameters() if p.grad is not None]
    assert not any(g.abs().sum() > 0 for g in interface_grads)  # no interface pass


def test_a_frozen_lang_proj_is_not_trained() -> None:
    config = preset_config("find_tiny")
    config.language.proj_trainable = False
    model = build_model(config)
    assert not model.lang_proj.requires_grad
    names = [n for g in param_groups(model, weight_decay=0.05) for n in g["names"]]
    assert "lang_proj" not in names and any(n.startswith("interface.") for n in names)
