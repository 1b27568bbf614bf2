"""Tiny random Hugging Face checkpoints written locally (no hub).

Plain functions, so the benchmark scripts can import them; the tests reach them through the
``tiny_hf`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SENTENCES = [
    "a dog sits on the grass next to a red car",
    "two people walk a small dog in the park",
    "the cat sleeps on a blue sofa near the window",
    "an elephant and a giraffe stand under a tree",
]


def _word_level_tokenizer(*, bos: str, eos: str, template: str, extra: tuple[str, ...] = ()):
    """A WordLevel tokenizer trained on :data:`SENTENCES`, wrapped as a fast HF tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<unk>", bos, eos, *extra]
    tokenizer.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tokenizer.token_to_id(t)) for t in (bos, eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, unk_token="<unk>"
    )


def write_tiny_llama(directory: Path, *, num_layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer ``LlamaModel`` with grouped-query attention (4 heads, 2 KV heads), no pad token."""
    from transformers import LlamaConfig, LlamaModel

    tokenizer = _word_level_tokenizer(bos="<s>", eos="</s>", template="<s> $A")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_tiny_clip(directory: Path, *, seed: int = 0) -> Path:
    """A ``CLIPModel`` (text + vision towers, patch 16, native 32x32), CLIP-like tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    tokenizer = _word_level_tokenizer(
        bos="<|startoftext|>", eos="<|endoftext|>", template="<|startoftext|> $A <|endoftext|>"
    )
    torch.manual_seed(seed)
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "image_size": 32, "patch_size": 16}  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_tiny_clip_vision(directory: Path, *, seed: int = 0) -> Path:
    """A ``CLIPVisionModel`` with patch size 8 (not 16: exercises the grid resampling)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8,
    )  # fmt: skip
    CLIPVisionModel(config).save_pretrained(directory)
    return directory


def write_tiny_dinov2(directory: Path, *, seed: int = 0) -> Path:
    """A ``Dinov2Model`` with patch size 14 and a ``preprocessor_config.json`` (custom mean/std)."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=56, patch_size=14,
    )  # fmt: skip
    Dinov2Model(config).save_pretrained(directory)
    preprocessor = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return directory


def write_tiny_sam(directory: Path, *, seed: int = 0) -> Path:
    """A ``SamModel`` with a 64x64 native input, patch 16 (a 4x4 grid), neck width 16."""
    from transformers import SamConfig, SamModel

    torch.manual_seed(seed)
    vision = {"hidden_size": 32, "output_channels": 16, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 64, "patch_size": 16, "mlp_dim": 64,
              "window_size": 2, "global_attn_indexes": [1], "num_pos_feats": 8}  # fmt: skip
    prompt = {"hidden_size": 16, "image_size": 64, "patch_size": 16, "mask_input_channels": 4}
    decoder = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "iou_head_hidden_dim": 16}  # fmt: skip
    config = SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    SamModel(config).save_pretrained(directory)
    return directory


def write_tiny_sam_vision(directory: Path, *, seed: int = 0) -> Path:
    """A ``SamVisionModel`` alone (``model_type`` ``sam_vision_model``), same sizes as above."""
    from transformers import SamVisionConfig, SamVisionModel

    torch.manual_seed(seed)
    config = SamVisionConfig(
        hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
        image_size=64, patch_size=16, mlp_dim=64, window_size=2, global_attn_indexes=[1],
    )  # fmt: skip
    SamVisionModel(config).save_pretrained(directory)
    return directory
