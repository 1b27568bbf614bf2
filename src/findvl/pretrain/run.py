"""One pretraining run end to end: vocabulary, data, training, export, measured quality.

Output directory layout::

    OUT/synth-clip-vision/   RegNetModel + visual_projection.safetensors (ViT towers:
                             CLIPVisionModelWithProjection) + preprocessor_config.json
    OUT/synth-clip-text/     CLIPTextModelWithProjection + fast tokenizer
    OUT/pretrain-log.jsonl   one JSON record per logging step
    OUT/pretrain.json        settings, data sizes, budget spent, measured quality
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from findvl.data.readers.dataset import Sample
from findvl.data.synth.world import COLOURS
from findvl.encoders.loading import CLIP_MEAN, CLIP_STD
from findvl.encoders.preprocess import ImageNorm
from findvl.pretrain.config import PretrainConfig, clip_config, hierarchical_config
from findvl.pretrain.data import (
    PretrainData,
    read_captioned,
    read_class_table,
    to_pretrain_data,
)
from findvl.pretrain.evaluate import PretrainMetrics, evaluate_exported, evaluate_model
from findvl.pretrain.export import TEXT_DIR, VISION_DIR, export_towers, stored_statistics
from findvl.pretrain.hierarchical_model import DenseHierarchicalClip, build_dense_hierarchical_clip
from findvl.pretrain.model import DenseClipModel, build_dense_clip
from findvl.pretrain.negatives import BINDING_KINDS, REPLACEMENT_KINDS, NegativeVocabulary
from findvl.pretrain.tokenizer import train_tokenizer
from findvl.pretrain.trainer import TrainSummary, train

LOG_FILE = "pretrain-log.jsonl"
REPORT_FILE = "pretrain.json"


@dataclass
class PretrainReport:
    """What ``pretrain.json`` holds.

    Attributes:
        vision_dir / text_dir: the exported directories.
        longest_side / grid_stride: what to load the vision tower with
            (``load_vision_encoder(..., longest_side=, grid_stride=)``) so the adapter feeds it
            the training pixels (ViT: ``longest_side = image_size * grid_stride / patch_size``;
            ConvNeXt: the training size, and no grid stride, None).
        vocab_size: tokens of the learned vocabulary (specials included).
        train_images / holdout_images: images trained on / kept out for the logged metrics.
        parameters: ``{"vision": n, "text": n}`` of the exported towers (projections included).
        summary: the training budget spent.
        eval_split: the split measured at the end (None when the data has no such split).
        metrics: quality on ``eval_split`` with the in-memory model (dense head included).
        exported_recall_at_1: the same retrieval, recomputed from the exported directories.
        config: the full :class:`PretrainConfig`.
    """

    vision_dir: str
    text_dir: str
    longest_side: int
    grid_stride: int | None
    vocab_size: int
    train_images: int
    holdout_images: int
    parameters: dict[str, int]
    summary: TrainSummary
    eval_split: str | None
    metrics: PretrainMetrics | None
    exported_recall_at_1: dict | None
    config: dict

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.metrics is not None:
            out["metrics"] = self.metrics.to_dict()
        return out


def _prepare_out(out: Path, *, overwrite: bool) -> None:
    targets = [out / VISION_DIR, out / TEXT_DIR, out / LOG_FILE, out / REPORT_FILE]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (pass --overwrite to replace it)")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _split_holdout(data: PretrainData, count: int, seed: int) -> tuple[PretrainData, PretrainData]:
    """``count`` images (at most a fifth, at least 2) drawn by ``seed`` -> (train, holdout)."""
    count = max(2, min(count, len(data) // 5))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1))
    return data.subset(order[count:]), data.subset(order[:count])


def _parameters(model: DenseClipModel | DenseHierarchicalClip) -> dict[str, int]:
    """Parameters of each exported tower (projection included, dense head excluded)."""
    owner = model.clip if isinstance(model, DenseClipModel) else model
    towers = {
        "vision": (owner.vision_model, owner.visual_projection),
        "text": (owner.text_model, owner.text_projection),
    }
    return {
        name: sum(p.numel() for m in modules for p in m.parameters())
        for name, modules in towers.items()
    }


def pretrain_encoders(
    data_root: str | Path,
    out: str | Path,
    cfg: PretrainConfig,
    *,
    eval_split: str | None = "val",
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> PretrainReport:
    """Pretrain both towers on ``data_root``'s train split and export them under ``out``.

    Args:
        data_root: dataset root with a ``train`` split (``findvl data synth`` layout).
        out: output directory (see the module docstring).
        cfg: the run's settings.
        eval_split: split measured at the end when present (the zero-shot numbers).
        overwrite: replace earlier outputs in ``out``.
        progress: show a progress bar.
        echo: where log records go besides the log file (default: stdout).
    """
    data_root, out = Path(data_root), Path(out)
    _prepare_out(out, overwrite=overwrite)
    echo = echo or (lambda line: print(line, file=sys.stdout, flush=True))
    torch.manual_seed(cfg.optim.seed)
    v = cfg.vision
    side = v.longest_side()
    # the label grid; a ConvNeXt sees the pixels unresampled (patch = grid stride)
    patch, grid_stride = (v.patch_size, v.grid_stride) if v.kind == "vit" else (v.label_stride,) * 2
    norm = ImageNorm(
        mean=stored_statistics(CLIP_MEAN),
        std=stored_statistics(CLIP_STD),
        longest_side=side,
        pad_multiple=32,
    )
    train_samples = read_captioned(data_root, "train")
    tokenizer = train_tokenizer(
        [c for s in train_samples for c in s.captions],
        vocab_size=cfg.text.vocab_size,
        max_length=cfg.text.max_length,
    )
    classes = read_class_table(data_root, "train")

    if cfg.objective.colour_weight and cfg.vision.kind == "vit":
        raise ValueError("colour heads need a hierarchical image tower (--vision resnet)")
    # the synthetic world's colours, when the objective has colour heads
    palette = tuple(COLOURS.values()) if cfg.objective.colour_weight else None
    shapes = tuple(n for n, thing in zip(classes.names, classes.isthing) if thing)
    synthetic = NegativeVocabulary.synthetic()
    vocabulary = NegativeVocabulary(shapes, synthetic.colours, synthetic.sizes)

    def load(samples: list[Sample], kinds: tuple[str, ...]) -> PretrainData:
        return to_pretrain_data(
            samples, tokenizer=tokenizer, norm=norm, patch_size=patch,
            grid_stride=grid_stride, classes=classes, max_length=cfg.text.max_length,
            negatives=vocabulary if kinds else None, negative_kinds=kinds,
            negative_seed=cfg.optim.seed, palette=palette,
        )  # fmt: skip

    train_data, holdout = _split_holdout(
        load(train_samples, cfg.objective.negative_kinds()), cfg.optim.holdout, cfg.optim.seed
    )
    model = _build_model(
        cfg, tokenizer, num_classes=len(classes.names), num_colours=len(palette or ())
    )
    with (out / LOG_FILE).open("w", encoding="utf-8") as log_file:

        def log(record: dict) -> None:
            line = json.dumps(record)
            log_file.write(line + "\n")
            log_file.flush()
            echo(line)

        summary = train(
            model, train_data, holdout=holdout, optim=cfg.optim, objective=cfg.objective,
            log=log, progress=progress,
        )  # fmt: skip
    vision_dir, text_dir = export_towers(model, out, tokenizer=tokenizer, norm=norm)
    metrics = exported = None
    has_eval = eval_split is not None and _has_split(data_root, eval_split)
    if has_eval:
        # every kind of negative, so that the report says how each is told apart
        eval_data = load(read_captioned(data_root, eval_split), REPLACEMENT_KINDS + BINDING_KINDS)
        metrics = evaluate_model(model, eval_data)
        exported = asdict(evaluate_exported(vision_dir, text_dir, eval_data).recall_at_1)
    report = PretrainReport(
        vision_dir=str(vision_dir),
        text_dir=str(text_dir),
        longest_side=side,
        grid_stride=v.grid_stride if v.kind == "vit" else None,
        vocab_size=len(tokenizer),
        train_images=len(train_data),
        holdout_images=len(holdout),
        parameters=_parameters(model),
        summary=summary,
        eval_split=eval_split if has_eval else None,
        metrics=metrics,
        exported_recall_at_1=exported,
        config=cfg.to_dict(),
    )
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _build_model(
    cfg: PretrainConfig, tokenizer, *, num_classes: int, num_colours: int = 0
) -> DenseClipModel | DenseHierarchicalClip:
    """The freshly initialised towers of ``cfg.vision.kind`` with their dense head(s)."""
    clip = clip_config(
        cfg, vocab_size=len(tokenizer), bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
    )  # fmt: skip
    if cfg.vision.kind == "vit":
        return build_dense_clip(
            clip, num_classes=num_classes, max_logit_scale=cfg.objective.max_logit_scale
        )
    return build_dense_hierarchical_clip(
        hierarchical_config(cfg), clip.text_config,
        projection_dim=cfg.objective.projection_dim, num_classes=num_classes,
        init_logit_scale=clip.logit_scale_init_value,
        max_logit_scale=cfg.objective.max_logit_scale, num_colours=num_colours,
    )  # fmt: skip


def _has_split(root: Path, split: str) -> bool:
    return (root / "annotations" / f"panoptic_{split}.json").is_file()
