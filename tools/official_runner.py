"""Run the official FIND head on backbone features for each task, as its evaluation does.

Each function builds the ``extra`` inputs the way the official evaluation entry points do
(``GeneralizedFIND.evaluate``, ``evaluate_grounding``, ``evaluate_interactive``,
``evaluate_retrieval``; batch size 1) and returns the tensors findvl is compared with.
Texts are tokenised here (``token=True`` paths of the official encoder), because the official
``token=False`` paths move tensors to CUDA.
"""

from __future__ import annotations

import torch
from torch import nn


def _tokens(lang, texts: list[str], length: int) -> dict[str, torch.Tensor]:
    t = lang.tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
    )
    return {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}


def token_embeddings(lang, texts: list[str], length: int, features=None):
    """Official ``get_text_token_embeddings(tokens, token=True)``; ``features`` (LLaMA configs:
    precomputed ``[T,L,C]`` token features) uses its ``embed=True`` path instead."""
    tokens = _tokens(lang, texts, length)
    if features is None:
        out = lang.get_text_token_embeddings(tokens, token=True, norm=False)
    else:
        out = {"token_emb": features @ lang.lang_proj}
    return out["token_emb"], tokens["attention_mask"].bool()


@torch.no_grad()
def class_embeddings(head, class_names: list[str], length: int, features_of=None) -> torch.Tensor:
    """As ``get_class_embeddings(..., is_eval=True)``: one text-only pass per class prompt.

    ``class_names`` are the final texts (prompt already applied); ``features_of(texts)`` gives
    LLaMA features when the config has no text tower here.
    """
    predictor, lang = head.predictor, head.predictor.lang_encoder
    rows = []
    for name in class_names:
        feats = features_of([name]) if features_of is not None else None
        emb, mask = token_embeddings(lang, [name], length, feats)
        tokens = nn.utils.rnn.pad_sequence(
            [e[m] for e, m in zip(emb, mask)], padding_value=-1, batch_first=True
        )
        token_mask = tokens.sum(-1) == -emb.shape[-1]
        extra = {"class_tokens_emb": tokens.transpose(0, 1), "class_tokens_mask": token_mask}
        c = emb.shape[-1]
        fake = [torch.zeros(1, c, s, s) for s in (20, 40, 80, 160)]
        out = predictor(fake[:-1], fake[-1], extra=extra, task="class")
        rows.append(out["pred_retrievals_class"][0])
    return torch.cat(rows)


@torch.no_grad()
def pixel_features(head, features: dict[str, torch.Tensor]):
    mask_features, _, multi_scale = head.pixel_decoder.forward_features(features)
    return mask_features, multi_scale


@torch.no_grad()
def generic(head, features, class_table: torch.Tensor) -> dict[str, torch.Tensor]:
    """Generic segmentation: ``pred_logits [1,N,K+1]``, ``pred_masks [1,N,h,w]``.

    Leaves ``class_table`` installed as the encoder's class embeddings: the official forward
    of every task computes class logits and needs them (as after any official evaluation).
    """
    head.predictor.lang_encoder.default_text_embeddings = class_table
    mask_features, multi_scale = pixel_features(head, features)
    out = head.predictor(multi_scale, mask_features, extra={}, task="seg")
    return {"logits": out["pred_logits"], "masks": out["pred_masks"]}


@torch.no_grad()
def grounding(head, features, phrases: list[str], length: int, feats=None) -> dict:
    """As ``evaluate_grounding``: scores ``[N,T]`` = ``min(exp(scale),100) · cos``."""
    lang = head.predictor.lang_encoder
    emb, mask = token_embeddings(lang, phrases, length, feats)
    query = emb[mask]
    indices = torch.arange(len(mask))[:, None]
    token_indices = (mask.long() * indices)[mask]
    extra = {
        "grounding_tokens": query[:, None],
        "grounding_nonzero_mask": torch.zeros(query.shape[0], 1, dtype=torch.bool).t(),
        "grounding_token_indices": token_indices[:, None],
        "grounding_query_indices": torch.arange(len(mask))[:, None],
    }
    mask_features, multi_scale = pixel_features(head, features)
    lang_head = head.predictor.lang_encoder
    out = head.predictor(multi_scale, mask_features, extra=extra, task="grounding_eval")
    v = out["pred_gtexts"][0]
    t = out["pred_grounding_query"][0]
    v = v / (v.norm(dim=-1, keepdim=True) + 1e-7)
    t = t / (t.norm(dim=-1, keepdim=True) + 1e-7)
    scores = lang_head.logit_scale.exp().clamp(max=100) * v @ t.t()
    return {"scores": scores, "masks": out["pred_gmasks"][0]}


@torch.no_grad()
def interactive(head, features, prompts: torch.Tensor) -> dict:
    """As ``evaluate_interactive`` (first round): ``prompts [M,H,W]`` bool on the padded canvas.

    Returns the proposals' pixel embeddings ``[N,C]``, the prompts' ``[M,C]``, their scores
    ``[M,N]`` (dot products, as the official selection) and the proposal masks.
    """
    pos = [prompts]
    neg = [prompts & False]
    extra = {
        "spatial_query_pos_mask": pos,
        "spatial_query_neg_mask": neg,
        "spatial_query_indices": torch.arange(len(prompts))[:, None],
    }
    mask_features, multi_scale = pixel_features(head, features)
    # task "spatial" would reduce the outputs to the best mask per prompt; any other name keeps
    # the raw embeddings (the selection is the argmax of the scores returned here)
    out = head.predictor(multi_scale, mask_features, extra=extra, task="spatial_parity")
    proposals, queries = out["pred_smaskembs"][0], out["pred_pspatials"][0]
    return {
        "scores": queries @ proposals.t(),
        "masks": out["pred_smasks"][0],
        "proposal_pixel": proposals,
        "query_pixel": queries,
    }


@torch.no_grad()
def retrieval(head, features, caption: str, length: int, feats=None) -> dict:
    """As ``evaluate_retrieval`` for one caption: image and caption embeddings ``[P]``."""
    lang = head.predictor.lang_encoder
    emb, mask = token_embeddings(lang, [caption], length, feats)
    tokens = nn.utils.rnn.pad_sequence([emb[0][mask[0]]], padding_value=-1)
    pad = tokens.sum(-1) == -tokens.shape[-1]
    tokens[pad] = 0
    extra = {"retrieval_tokens": tokens, "retrieval_nonzero_mask": pad.t()}
    mask_features, multi_scale = pixel_features(head, features)
    out = head.predictor(multi_scale, mask_features, extra=extra, task="seg")
    return {"image": out["pred_retrievals"][0, 0], "caption": out["pred_retrievals_lang"][0, 0]}


@torch.no_grad()
def interleave(head, features, sentence: str, spans, prompts, length: int, fast_tokenizer):
    """As ``evaluate_interleave_grounding`` (with the legend and image queries of the same
    forward): ``sentence`` has ``[INTERACTIVE]`` at visual entities, ``spans`` are the
    entities' character spans in it, ``prompts[e]`` is entity e's ``[H,W]`` region (None for
    text entities). Token-to-entity membership uses the fast tokenizer's offsets, as the
    official mappers do for tokenizers that report them.

    Returns entity scores ``[N,E]`` (pixel space for visual entities, semantic for text), the
    entity proposals' masks, the legend and image embeddings.
    """
    from modeling.utils.misc import decode_entity_mask_to_indices, pad_arbitrary_tensors

    lang = head.predictor.lang_encoder
    tokens = _tokens(lang, [sentence], length)
    fast = fast_tokenizer(
        [sentence], padding="max_length", truncation=True, max_length=length,
        return_offsets_mapping=True, return_tensors="pt",
    )  # fmt: skip
    if not torch.equal(fast["input_ids"][tokens["attention_mask"].bool()],
                       tokens["input_ids"][tokens["attention_mask"].bool()]):  # fmt: skip
        raise ValueError("the fast and slow tokenizers disagree on the interleaved sentence")
    offsets = fast["offset_mapping"]
    bounds = torch.tensor([[s, e] for s, e in spans])[:, None]  # Ex1x2
    entity_to_tokens = (
        (bounds[:, :, 0] <= offsets[:, :, 0])
        & (bounds[:, :, 1] >= offsets[:, :, 1])
        & (offsets[:, :, 0] != offsets[:, :, 1])
    )  # ExL
    out = lang.get_text_token_embeddings(tokens, token=True, norm=False)
    valid = tokens["attention_mask"][0].bool()
    query = out["token_emb"][0][valid]
    entity_mask = entity_to_tokens[:, valid]
    h, w = features["res2"].shape[-2] * 4, features["res2"].shape[-1] * 4
    regions = torch.stack(
        [p if p is not None else torch.zeros(h, w, dtype=torch.bool) for p in prompts]
    )
    isvisual = torch.tensor([p is not None for p in prompts]).float()
    tokens_ = nn.utils.rnn.pad_sequence([query], padding_value=-1)
    pad = tokens_.sum(-1) == -tokens_.shape[-1]
    tokens_[pad] = 0
    extra = {
        "interleave_tokens": tokens_,
        "interleave_nonzero_mask": pad.t(),
        "interleave_query_pos_mask": [regions],
        "interleave_query_neg_mask": [regions & False],
        "interleave_isvisual": nn.utils.rnn.pad_sequence([isvisual], padding_value=0),
        "interleave_entity_mask": pad_arbitrary_tensors([entity_mask], padding_value=False)
        .transpose(0, 1),
        "interleave_entity_indices": nn.utils.rnn.pad_sequence(
            [decode_entity_mask_to_indices(entity_mask)], padding_value=-5
        ),
        "interleave_query_indices": nn.utils.rnn.pad_sequence(
            [torch.arange(len(prompts))], padding_value=-6
        ),
    }
    mask_features, multi_scale = pixel_features(head, features)
    res = head.predictor(multi_scale, mask_features, extra=extra, task="seg")
    pixel = res["pred_imaskembs"] @ res["pred_entity_pixel"].transpose(1, 2)
    semantic = res["pred_interleave_objects"] @ res["pred_entity_class"].transpose(1, 2)
    v = isvisual[None, None]
    return {
        "scores": (pixel * v + semantic * (1 - v))[0],
        "masks": res["pred_imasks"][0],
        "legend": res["pred_interleave_image"][0, 0],
        "image": res["pred_retrievals"][0, 0],
    }
