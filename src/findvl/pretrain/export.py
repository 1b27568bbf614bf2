"""Write the two towers as standard Hugging Face model directories.

* vision, ``kind="regnet"`` / ``"convnext"``: ``RegNetModel`` / ``ConvNextModel``
  (``model_type: regnet`` / ``convnext``), its image projection in
  ``visual_projection.safetensors`` (``weight``: ``[P,C]``, the pooled last stage to the shared
  embedding; transformers has no such class with a projection) and a
  ``preprocessor_config.json`` with the pixel mean/std the tower was trained with;
* vision, ``kind="vit"``: ``CLIPVisionModelWithProjection`` (``model_type: clip_vision_model``)
  and its ``preprocessor_config.json``;
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
from findvl.pretrain.hierarchical_model import DenseHierarchicalClip
from findvl.pretrain.model import DenseClipModel
from findvl.pretrain.tokenizer import save_tokenizer

VISION_DIR = "synth-clip-vision"
TEXT_DIR = "synth-clip-text"
PROJECTION_FILE = "visual_projection.safetensors"


def stored_statistics(values: tuple[float, ...]) -> tuple[float, ...]:
    """Mean/std on the 0..255 scale as ``preprocessor_config.json`` stores them and the
    loader reads them back (``round(v / 255, 8) * 255``): training uses these exact values."""
    return tuple(round(v / 255.0, 8) * 255.0 for v in values)


def _write_preprocessor(directory: Path, processor: dict, *, norm: ImageNorm) -> None:
    processor = {
        **processor,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [round(m / 255.0, 8) for m in norm.mean],  # see stored_statistics
        "image_std": [round(s / 255.0, 8) for s in norm.std],
        "do_convert_rgb": True,
    }
    text = json.dumps(processor, indent=2) + "\n"
    (directory / "preprocessor_config.json").write_text(text, encoding="utf-8")


def export_vision(
    model: DenseClipModel | DenseHierarchicalClip, directory: Path, *, norm: ImageNorm
) -> None:
    """Save the vision tower (+ projection) and its preprocessing to ``directory``."""
    side = norm.longest_side
    if isinstance(model, DenseHierarchicalClip):
        from safetensors.torch import save_file

        model.vision_model.save_pretrained(directory)
        weight = model.visual_projection.weight.detach().contiguous()
        save_file({"weight": weight}, str(directory / PROJECTION_FILE))
        processor = {
            "image_processor_type": "ConvNextImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": side},  # >= 384 would skip the crop; here crop_pct 1
            "crop_pct": 1.0,
            "resample": 2,
        }
        _write_preprocessor(directory, processor, norm=norm)
        return
    from transformers import CLIPVisionModelWithProjection

    config = model.clip.config.vision_config
    tower = CLIPVisionModelWithProjection(config)
    tower.vision_model.load_state_dict(model.clip.vision_model.state_dict())
    tower.visual_projection.load_state_dict(model.clip.visual_projection.state_dict())
    tower.save_pretrained(directory)
    processor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": config.image_size},
        "resample": 2,  # bilinear, as the adapter's resampling
        "do_center_crop": True,
        "crop_size": {"height": config.image_size, "width": config.image_size},
    }
    _write_preprocessor(directory, processor, norm=norm)


def export_text(
    model: DenseClipModel | DenseHierarchicalClip, directory: Path, *, tokenizer
) -> None:
    """Save the text tower (+ projection) and its tokenizer to ``directory``."""
    from transformers import CLIPTextModelWithProjection

    tower = CLIPTextModelWithProjection(model.text_model.config)
    tower.text_model.load_state_dict(model.text_model.state_dict())
    tower.text_projection.load_state_dict(model.text_projection.state_dict())
    tower.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)


def export_towers(
    model: DenseClipModel | DenseHierarchicalClip, out: Path, *, tokenizer, norm: ImageNorm
) -> tuple[Path, Path]:
    """Write ``out/synth-clip-vision`` and ``out/synth-clip-text``; returns both paths."""
    vision, text = out / VISION_DIR, out / TEXT_DIR
    with offline_quiet():
        export_vision(model, vision, norm=norm)
        export_text(model, text, tokenizer=tokenizer)
    return vision, text
