"""Build the official FIND modules from a checkout (run unmodified, with ``official_stubs``).

``official_config(checkout, name, shrink)`` reads ``configs/find/<name>.yaml``; ``shrink`` scales
the decoder down (widths, depths, queries) for small golden fixtures. ``build_official_head``
returns the official ``sem_seg_head`` (pixel decoder + FIND decoder + language encoder); its
``state_dict`` keys, prefixed with ``sem_seg_head.``, are those of a released checkpoint.
"""

from __future__ import annotations

import copy
from pathlib import Path

import official_stubs
import torch
import yaml
from torch import nn

CONFIGS = (
    "focalt_llama_lang",
    "focalt_unicl_lang",
    "focall_llama_lang",
    "focall_unicl_lang",
    "davitd3_llama_lang",
    "davitd3_unicl_lang",
    "davitd5_llama_lang",
    "davitd5_unicl_lang",
    "samb_llama_lang",
    "samb_unicl_lang",
)


def official_config(checkout: str | Path, name: str, shrink: dict | None = None) -> dict:
    """The official config ``name`` as a dict, optionally shrunk (keys of ``shrink``:
    ``dim``, ``heads``, ``ffn``, ``dec_layers``, ``queries``, ``enc_layers``, ``memories``,
    ``text_width``, ``text_layers``, ``text_heads``)."""
    path = Path(checkout) / "configs" / "find" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    if shrink:
        m = cfg["MODEL"]
        dec, enc, text = m["DECODER"], m["ENCODER"], m["TEXT"]
        dec["HIDDEN_DIM"] = m["DIM_PROJ"] = enc["CONVS_DIM"] = enc["MASK_DIM"] = shrink["dim"]
        dec["NHEADS"] = shrink["heads"]
        dec["DIM_FEEDFORWARD"] = shrink["ffn"]
        dec["DEC_LAYERS"] = shrink["dec_layers"] + 1
        dec["NUM_OBJECT_QUERIES"] = shrink["queries"] + 1
        enc["TRANSFORMER_ENC_LAYERS"] = shrink["enc_layers"]
        cfg["ATTENTION_ARCH"]["SPATIAL_MEMORIES"] = shrink["memories"]
        text["WIDTH"] = shrink["text_width"]
        if "LAYERS" in text:
            text["LAYERS"], text["HEADS"] = shrink["text_layers"], shrink["text_heads"]
    return cfg


def task_switch(cfg: dict) -> dict:
    dec = cfg["MODEL"]["DECODER"]
    return {
        "bbox": dec.get("DETECTION", False),
        "mask": dec.get("MASK", True),
        "spatial": dec["SPATIAL"]["ENABLED"],
        "retrieval": dec["RETRIEVAL"]["ENABLED"],
        "grounding": dec["GROUNDING"]["ENABLED"],
        "interleave": dec["INTERLEAVE"]["ENABLED"],
        "openimage": {"grounding": False, "mask": False},
    }


class LlamaStandIn(nn.Module):
    """The trainable part of the official LLaMA encoder (``lang_proj``, ``logit_scale``); the
    LLM itself is frozen and is not part of the parity check (its features are inputs)."""

    def __init__(self, width: int, dim_proj: int) -> None:
        super().__init__()
        self.lang_proj = nn.Parameter(torch.randn(width, dim_proj) * 0.02)
        self.logit_scale = nn.Parameter(torch.ones([]))


def build_language(cfg: dict, tokenizer_dir: str | None):
    """The official UniCL ``LanguageEncoder`` (tokenizer from ``tokenizer_dir``) or, for
    LLaMA configs, :class:`LlamaStandIn`."""
    text = cfg["MODEL"]["TEXT"]
    if text["ARCH"] == "llamaencoder":
        return LlamaStandIn(text["WIDTH"], cfg["MODEL"]["DIM_PROJ"])
    from modeling.language import vlpencoder  # noqa: F401  (registers the encoder)
    from modeling.language.LangEncoder import transformer  # noqa: F401

    cfg = copy.deepcopy(cfg)
    cfg["MODEL"]["TEXT"]["PRETRAINED_TOKENIZER"] = tokenizer_dir
    return vlpencoder.LanguageEncoder(cfg)


def build_official_head(cfg: dict, in_channels: dict[str, int], tokenizer_dir: str | None):
    """The official ``XdecoderHead`` (``pixel_decoder`` + ``predictor``) for backbone levels
    ``in_channels = {"res2": C2, ...}``."""
    from detectron2.layers import ShapeSpec
    from modeling.body.xdecoder_head import XdecoderHead
    from modeling.interface import find  # noqa: F401
    from modeling.vision.encoder import transformer_encoder_fpn  # noqa: F401

    shapes = {
        name: ShapeSpec(channels=c, stride=2 ** (i + 2))
        for i, (name, c) in enumerate(in_channels.items())
    }
    lang = build_language(cfg, tokenizer_dir)
    return XdecoderHead(cfg, shapes, lang, {"task_switch": task_switch(cfg)})


def install(checkout: str | Path) -> None:
    official_stubs.install(checkout)
    import sys

    for package in ("modeling.body", "modeling.architectures"):
        path = Path(checkout).resolve() / package.replace(".", "/")
        official_stubs._module(package, __path__=[str(path)], __package__=package)
    sys.modules["modeling.interface"].__dict__.setdefault("build_decoder", _build_decoder)
    lang = sys.modules["modeling.language.LangEncoder"]
    lang.build_tokenizer, lang.build_lang_encoder = _build_tokenizer, _build_lang_encoder
    sys.modules["modeling.vision.encoder"].__dict__.setdefault("build_encoder", _build_encoder)


def _build_decoder(config, *args, **kwargs):
    from modeling.interface.build import model_entrypoints

    return model_entrypoints(config["MODEL"]["DECODER"]["NAME"])(config, *args, **kwargs)


def _build_encoder(config, *args, **kwargs):
    from modeling.vision.encoder.build import model_entrypoints

    return model_entrypoints(config["MODEL"]["ENCODER"]["NAME"])(config, *args, **kwargs)


def _build_tokenizer(text_cfg):
    """As the official ``build_tokenizer`` for ``TOKENIZER: clip``, from a local directory."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(text_cfg["PRETRAINED_TOKENIZER"])
    tokenizer.add_special_tokens({"cls_token": tokenizer.eos_token})
    return tokenizer


def _build_lang_encoder(text_cfg, tokenizer, verbose, **kwargs):
    from modeling.language.LangEncoder import transformer

    return transformer.lang_encoder(text_cfg, tokenizer, verbose, **kwargs)
