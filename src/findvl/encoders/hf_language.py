"""Frozen Hugging Face text models (causal LMs, CLIP text towers) behind ``LanguageEncoder``.

Tokenisation (both families): a *fast* tokenizer, right padding to the longest text of the batch
(at most ``max_length`` tokens, longer texts truncated), BOS/EOT kept as the tokenizer's
post-processor adds them, the EOS token used for padding when the tokenizer has no pad token.
Offsets come from ``return_offsets_mapping``; special and padding tokens get ``(0, 0)``.
Features are returned as float32 whatever dtype the model runs in, and are zero at padding.
"""

from __future__ import annotations

import torch
from torch import nn

from findvl.encoders.language import LanguageEncoder, TokenFeatures, check_texts


def prepare_tokenizer(tokenizer, *, path: str) -> object:
    """Check ``tokenizer`` is fast (offsets needed), pad on the right, pad = EOS when missing."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{path}: a fast tokenizer (tokenizer.json) is needed for token offsets")
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{path}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize(
    tokenizer, texts: list[str], *, max_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Texts -> ``ids [B,L]``, ``mask [B,L]`` (bool) and ``offsets [B,L,2]`` (int64).

    ``L`` is the longest tokenised text of the batch, capped at ``max_length``.
    """
    batch = tokenizer(
        texts,
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    mask = batch["attention_mask"].bool()
    special = batch["special_tokens_mask"].bool() | ~mask
    offsets = batch["offset_mapping"].long().masked_fill(special[..., None], 0)
    return batch["input_ids"], mask, offsets


def mean_over_tokens(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B,L,D]``, ``[B,L]`` -> ``[B,D]`` mean over the tokens where ``mask`` is True."""
    weights = mask[..., None].to(features.dtype)
    return (features * weights).sum(1) / weights.sum(1).clamp(min=1)


def resolve_layer(layer: int, num_layers: int) -> int:
    """A ``hidden_states`` index (negative allowed) -> number of decoder layers to run, 0..N.

    ``hidden_states`` has ``N + 1`` entries: the embeddings, then the output of each layer.
    """
    if not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(
            f"layer {layer} is out of range for a model with {num_layers} layers "
            f"(hidden_states has {num_layers + 1} entries: {-(num_layers + 1)}..{num_layers})"
        )
    return layer % (num_layers + 1)


class CausalLMEncoder(LanguageEncoder):
    """A decoder-only LM (LLaMA family, Mistral, Qwen2, ...) read at one hidden layer.

    ``model`` is the base model (``AutoModel``) already truncated to the layers it must run:
    ``features == hidden_states[layer]`` of the full model with ``output_hidden_states=True``.
    When ``layer`` selects the last entry the final norm is applied; otherwise the model's final
    norm has been replaced by ``nn.Identity`` (entry ``k < N`` is the raw output of layer ``k``).
    ``sentence`` is the mean over valid tokens (BOS included), as the official LLaMA encoder.

    Args:
        model: the truncated base model; frozen here.
        tokenizer: a fast tokenizer prepared by :func:`prepare_tokenizer`.
        layer: the selected ``hidden_states`` index, as given by the user.
        max_length: longest token sequence (BOS included).
        cache_key: model identity + feature layer + settings that change the features.
        model_type: ``config.model_type``.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        tokenizer,
        layer: int,
        max_length: int,
        cache_key: str,
        model_type: str,
    ) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_length = max_length
        self.dim = model.config.hidden_size
        self.cache_key = cache_key
        self.model_type = model_type

    def train(self, mode: bool = True) -> CausalLMEncoder:
        """The frozen model stays in eval mode whatever the parent's mode."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def num_layers_run(self) -> int:
        return len(self.model.layers)

    def encode(self, texts: list[str]) -> TokenFeatures:
        """Texts -> features ``[B,L,D]`` (float32), mask ``[B,L]``, offsets, sentence ``[B,D]``."""
        check_texts(texts)
        ids, mask, offsets = tokenize(self.tokenizer, texts, max_length=self.max_length)
        device = next(self.model.parameters()).device
        ids, mask, offsets = ids.to(device), mask.to(device), offsets.to(device)
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)  # as the official encoder
        with torch.no_grad():
            out = self.model(
                input_ids=ids,
                attention_mask=mask.long(),
                position_ids=position_ids,
                use_cache=False,
            )
        features = out.last_hidden_state.float() * mask[..., None]
        return TokenFeatures(
            features=features, mask=mask, offsets=offsets, sentence=mean_over_tokens(features, mask)
        )


class ClipTextEncoder(LanguageEncoder):
    """A CLIP-style text tower (``CLIPTextModel``): features = ``last_hidden_state``.

    ``last_hidden_state`` is after the final layer norm. ``sentence`` is the feature of the EOT
    token, found as the first position holding the tokenizer's EOS id (with the OpenAI CLIP
    vocabulary this is the same as ``argmax(input_ids)``; padding with EOS comes after it); a
    row without EOS (impossible with a CLIP tokenizer) uses its last valid token.

    Args:
        model: ``CLIPTextModel``; frozen here.
        tokenizer: a fast tokenizer prepared by :func:`prepare_tokenizer`.
        max_length: longest token sequence (capped by the position table).
        cache_key: model identity + settings that change the features.
        model_type: ``config.model_type``.
    """

    def __init__(
        self, *, model: nn.Module, tokenizer, max_length: int, cache_key: str, model_type: str
    ) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, model.config.max_position_embeddings)
        self.dim = model.config.hidden_size
        self.cache_key = cache_key
        self.model_type = model_type

    def train(self, mode: bool = True) -> ClipTextEncoder:
        """The frozen model stays in eval mode whatever the parent's mode."""
        super().train(mode)
        self.model.eval()
        return self

    def eot_index(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B,L]`` ids and mask -> ``[B]`` index of each row's EOT token."""
        is_eos = (ids == self.tokenizer.eos_token_id) & mask
        last_valid = mask.long().sum(1) - 1
        first_eos = is_eos.long().argmax(1)
        return torch.where(is_eos.any(1), first_eos, last_valid)

    def encode(self, texts: list[str]) -> TokenFeatures:
        """Texts -> features ``[B,L,D]`` (float32), mask ``[B,L]``, offsets, sentence ``[B,D]``."""
        check_texts(texts)
        ids, mask, offsets = tokenize(self.tokenizer, texts, max_length=self.max_length)
        device = next(self.model.parameters()).device
        ids, mask, offsets = ids.to(device), mask.to(device), offsets.to(device)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask.long())
        features = out.last_hidden_state.float() * mask[..., None]
        rows = torch.arange(ids.shape[0], device=device)
        sentence = features[rows, self.eot_index(ids, mask)]
        return TokenFeatures(features=features, mask=mask, offsets=offsets, sentence=sentence)
