"""Write the two towers as standard Hugging Face model directories.

* vision: ``CLIPVisionModelWithProjection`` (``model_type: clip_vision_model``) and a
  ``preprocessor_config.json`` with the pixel mean/std the tower was trained with;
* text: ``CLIPTextModelWithProjection`` (``model_type: clip_text_model``) with its fast tokenizer
  (``tokenizer.json``) and OpenAI's ``vocab.json`` / ``merges.txt``.

The projections let the pair be used for zero-shot retrieval as any CLIP; ``CLIPVisionModel`` /
``CLIPTextModel`` (what findvl's adapters load) read the same directories and ignore them.
"""

from __future__ import annotations

import json
from pathlib import Path

from findvl.encoders.loading import offline_quiet
from findvl.encoders.preprocess import ImageNorm
from findvl.pretrain.model import DenseClipModel
from findvl.pretrain.tokenizer import save_tokenizer

VISION_DIR = "synth-clip-vision"
TEXT_DIR = "synth-clip-text"


def stored_statistics(values: tuple[float, ...]) -> tuple[float, ...]:
    """Mean/std on the 0..255 scale as ``preprocessor_config.json`` stores them and the
    loader reads them back (``round(v / 255, 8) * 255``): training uses these exact values."""
    return tuple(round(v / 255.0, 8) * 255.0 for v in values)


def export_vision(model: DenseClipModel, directory: Path, *, norm: ImageNorm) -> None:
    """Save the vision tower (+ projection) and its preprocessing to ``directory``."""
    from transformers import CLIPVisionModelWithProjection

    config = model.clip.config.vision_config
    tower = CLIPVisionModelWithProjection(config)
    tower.vision_model.load_state_dict(model.clip.vision_model.state_dict())
    tower.visual_projection.load_state_dict(model.clip.visual_projection.state_dict())
    tower.save_pretrained(directory)
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": config.image_size},
        "resample": 2,  # bilinear, as the adapter's resampling
        "do_center_crop": True,
        "crop_size": {"height": config.image_size, "width": config.image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [round(m / 255.0, 8) for m in norm.mean],  # see stored_statistics
        "image_std": [round(s / 255.0, 8) for s in norm.std],
        "do_convert_rgb": True,
    }
    text = json.dumps(preprocessor, indent=2) + "\n"
    (directory / "preprocessor_config.json").write_text(text, encoding="utf-8")


def export_text(model: DenseClipModel, directory: Path, *, tokenizer) -> None:
    """Save the text tower (+ projection) and its tokenizer to ``directory``."""
    from transformers import CLIPTextModelWithProjection

    tower = CLIPTextModelWithProjection(model.clip.config.text_config)
    tower.text_model.load_state_dict(model.clip.text_model.state_dict())
    tower.text_projection.load_state_dict(model.clip.text_projection.state_dict())
    tower.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)


def export_towers(
    model: DenseClipModel, out: Path, *, tokenizer, norm: ImageNorm
) -> tuple[Path, Path]:
    """Write ``out/synth-clip-vision`` and ``out/synth-clip-text``; returns both paths."""
    vision, text = out / VISION_DIR, out / TEXT_DIR
    with offline_quiet():
        export_vision(model, vision, norm=norm)
        export_text(model, text, tokenizer=tokenizer)
    return vision, text
