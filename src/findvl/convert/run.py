"""``findvl convert``: a released checkpoint -> a findvl run directory.

The run directory holds one checkpoint (``step_00000000``) in the training format, a model
file (:mod:`findvl.model_file`), so ``findvl segment|ground|click|evaluate --checkpoint RUN``
load it like any trained run. Its config is the released preset; its vocabulary is COCO
panoptic (the released models' training vocabulary). Every converted weight is inside,
the frozen official backbone and pixel decoder included: the ``.pt`` is not needed afterwards,
and the run copied to another machine runs there. The run names its text-tower directory
relative to itself, as runs must:

* UniCL: the tower's weights are inside; the tokenizer files are copied to ``RUN/tokenizer``;
* LLaMA: ``RUN/language`` is a symbolic link to the ``--language`` directory; the model is not
  copied (it is the model file's foundation model, kept by path and the SHA-256 of its weight
  files). Move the run with the link, or give ``--language-path`` when loading it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from findvl.config import LanguageConfig, ModelConfig
from findvl.convert.coco_classes import COCO_PANOPTIC_ISTHING, COCO_PANOPTIC_NAMES
from findvl.convert.official import (
    Conversion,
    convert_state_dict,
    converted_config,
    load_converted,
    read_official_checkpoint,
    resolve_config,
)

#: Files of a tokenizer directory copied into a UniCL run.
TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def _attach_text_directory(run_dir: Path, config: LanguageConfig) -> str:
    """Put the text tower's directory inside ``run_dir``; return its relative name."""
    source = Path(config.path)
    if config.kind == "hf":
        os.symlink(source, run_dir / "language", target_is_directory=True)
        return "language"
    target = run_dir / "tokenizer"
    target.mkdir()
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    return "tokenizer"


@dataclass
class ConvertResult:
    """What ``convert_checkpoint`` wrote.

    Attributes:
        run_dir: the run directory.
        checkpoint: its checkpoint directory.
        preset: the released preset used.
        loaded: number of checkpoint tensors loaded.
        ignored: checkpoint key -> why it was not loaded.
    """

    run_dir: Path
    checkpoint: Path
    preset: str
    loaded: int
    ignored: dict[str, str]


def _language_width(config: LanguageConfig) -> int:
    """Hidden size of the LLaMA directory ``config.path`` (its ``config.json``)."""
    file = Path(config.path) / "config.json"
    try:
        width = json.loads(file.read_text())["hidden_size"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"--language: {file} gives no hidden_size ({error})") from None
    return int(width)


def build_for_conversion(config: ModelConfig):
    """The model to fill. A LLaMA text tower is replaced by a small stand-in of the same
    width (its weights are not converted and it would cost its full size in memory)."""
    from findvl.build import build_model

    if config.language.kind == "hf":
        stand_in = LanguageConfig(kind="tiny", dim=_language_width(config.language))
        config = dataclasses.replace(config, language=stand_in)
        model = build_model(config)
        model.language.requires_grad_(False)  # frozen, as the LLaMA it stands in for
        return model
    return build_model(config)


def convert_checkpoint(
    checkpoint: str | Path,
    *,
    config: str,
    out: str | Path,
    language: str | None = None,
    tokenizer: str | None = None,
    overrides: list[str] | None = None,
) -> ConvertResult:
    """Convert ``checkpoint`` (a released ``.pt``) for official config/preset ``config``.

    Raises:
        ValueError: bad arguments, an unreadable file, or a checkpoint that does not match the
            architecture (one line naming the keys).
        FileExistsError: ``out`` exists and is not empty.
    """
    from findvl.config import apply_overrides
    from findvl.train.checkpoint import save_checkpoint
    from findvl.train.config import TrainConfig

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out: {out} exists and is not an empty directory")
    preset = resolve_config(config)
    model_config = converted_config(preset, language=language, tokenizer=tokenizer)
    model_config = apply_overrides(model_config, list(overrides or []))
    external = model_config.language.kind == "hf"
    official = read_official_checkpoint(checkpoint)
    torch.manual_seed(0)
    model = build_for_conversion(model_config)
    conversion: Conversion = convert_state_dict(
        official, model, external_language=external, source=f"checkpoint {checkpoint}"
    )
    load_converted(model, conversion)
    out.mkdir(parents=True, exist_ok=True)
    relative = _attach_text_directory(out, model_config.language)
    saved_config = dataclasses.replace(
        model_config, language=dataclasses.replace(model_config.language, path=relative)
    )
    state = {
        "train": TrainConfig(model=saved_config).to_dict(),
        "vocabulary": {"names": list(COCO_PANOPTIC_NAMES), "isthing": list(COCO_PANOPTIC_ISTHING)},
        "converted_from": {
            "checkpoint": str(Path(checkpoint).resolve()),
            "config": config,
            "preset": preset,
            "ignored": conversion.ignored,
        },
    }
    saved = save_checkpoint(
        out,
        step=0,
        model=model,
        config=state,
        keep_last=None,
        model_config=saved_config,
        vocabulary=state["vocabulary"],
        base=out,
    )
    return ConvertResult(out, saved, preset, len(conversion.renamed), conversion.ignored)
