"""The pretraining loop: AdamW, warm-up + cosine schedule, a step and/or time budget, JSON logs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from findvl.pretrain.config import ObjectiveConfig, OptimConfig
from findvl.pretrain.data import PretrainData
from findvl.pretrain.evaluate import evaluate_model
from findvl.pretrain.hierarchical_model import DenseHierarchicalClip
from findvl.pretrain.losses import balanced_class_weight, clip_loss, multilevel_dense_loss
from findvl.pretrain.model import DenseClipModel


@dataclass
class TrainSummary:
    """How a run ended.

    Attributes:
        steps: optimiser steps taken.
        images_seen: training images consumed (``steps * batch_size``).
        wall_s: wall-clock seconds of the loop.
        cpu_s: CPU seconds of this process during the loop (all threads).
        final_loss: mean total loss of the last logging window.
    """

    steps: int
    images_seen: int
    wall_s: float
    cpu_s: float
    final_loss: float


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on norms, biases, embeddings or the logit scale."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.dim() < 2 or "embedding" in name or name.endswith("logit_scale")
        (no_decay if plain else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine decay to zero."""
    if progress < warmup:
        return (progress + 1e-3) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / (1.0 - warmup))))


class Budget:
    """Run progress in ``[0, 1]`` from steps taken and/or wall time spent (whichever is ahead)."""

    def __init__(self, *, steps: int | None, minutes: float | None) -> None:
        if steps is None and minutes is None:
            raise ValueError("a run needs a step count or a time budget")
        if (steps is not None and steps < 1) or (minutes is not None and minutes <= 0):
            raise ValueError(f"the budget must be positive (steps={steps}, minutes={minutes})")
        self.steps, self.seconds = steps, None if minutes is None else 60.0 * minutes
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def progress(self, step: int) -> float:
        done = [] if self.steps is None else [step / self.steps]
        if self.seconds is not None:
            done.append(self.elapsed() / self.seconds)
        return min(1.0, max(done))


class _Batches:
    """Endless shuffled epochs of image indices, drawn from a seeded generator."""

    def __init__(self, count: int, batch_size: int, generator: torch.Generator) -> None:
        if count < 2:
            raise ValueError(f"need at least 2 training images, got {count}")
        self.count, self.batch_size, self.generator = count, min(batch_size, count), generator
        self.order, self.position = torch.randperm(count, generator=generator), 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.count:
            self.order, self.position = torch.randperm(self.count, generator=self.generator), 0
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch


def random_keep(
    batch: int, patches: int, ratio: float, generator: torch.Generator
) -> torch.Tensor | None:
    """``[B,K]`` random patch indices, ``K = round(patches * (1 - ratio))``; None keeps all."""
    keep = round(patches * (1.0 - ratio))
    if keep >= patches:
        return None
    return torch.rand(batch, patches, generator=generator).argsort(1)[:, : max(1, keep)]


def dense_class_weight(data: PretrainData, objective: ObjectiveConfig) -> torch.Tensor:
    """``[K]`` dense-loss weights: frequency-balanced, things times ``objective.thing_weight``."""
    weight = balanced_class_weight(data.patch_counts, objective.class_balance)
    isthing = torch.tensor(data.classes.isthing)
    return torch.where(isthing, weight * objective.thing_weight, weight)


def train_step(
    model: DenseClipModel | DenseHierarchicalClip,
    data: PretrainData,
    images: torch.Tensor,
    captions: torch.Tensor,
    objective: ObjectiveConfig,
    *,
    keep: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
    colour_class_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch of images (one caption each, ``keep`` patches) and its parts.

    With hard or binding negatives in the objective (and negatives in ``data``) the captions'
    negatives run through the text tower in the same forward and join the image->text InfoNCE.
    """
    ids, mask = data.caption_ids[captions], data.caption_mask[captions]  # BxL
    batch = len(captions)
    if objective.negative_kinds() and data.negative_ids is not None:
        negative_mask = data.negative_mask[captions].flatten(0, 1)  # (B*R)xL
        made = negative_mask.any(1)
        ids = torch.cat([ids, data.negative_ids[captions].flatten(0, 1)[made]])
        mask = torch.cat([mask, negative_mask[made]])
    length = int(mask.sum(1).max())
    out = model(data.pixels[images], ids[:, :length], mask[:, :length], keep)
    counts = data.patch_counts[images]  # BxNxK
    if keep is not None:
        counts = counts.gather(1, keep[..., None].expand(-1, -1, counts.shape[-1]))
    contrastive = clip_loss(
        out.image_embeds, out.text_embeds[:batch], out.logit_scale, out.text_embeds[batch:]
    )
    dense = multilevel_dense_loss(out.patch_logits, counts, class_weight)
    loss = contrastive + objective.dense_weight * dense
    parts = {"loss": 0.0, "clip": contrastive.item(), "dense": dense.item()}
    if objective.colour_weight and out.colour_logits and data.patch_colours is not None:
        colour = multilevel_dense_loss(
            out.colour_logits, data.patch_colours[images], colour_class_weight
        )
        loss = loss + objective.colour_weight * colour
        parts["colour"] = colour.item()
    parts["loss"] = loss.item()
    return loss, parts


def train(
    model: DenseClipModel | DenseHierarchicalClip,
    data: PretrainData,
    *,
    holdout: PretrainData | None,
    optim: OptimConfig,
    objective: ObjectiveConfig,
    log: Callable[[dict], None],
    progress: bool = True,
) -> TrainSummary:
    """Train ``model`` on ``data`` until the budget of ``optim`` is spent.

    Every ``optim.eval_every`` steps (and at the end) ``log`` gets a record with the mean losses
    since the last record, the learning rate and temperature, and, when ``holdout`` is given,
    its retrieval R@1 and dense accuracy.
    """
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(optim.seed)
    optimizer = torch.optim.AdamW(param_groups(model, optim.weight_decay), lr=optim.lr)
    budget = Budget(steps=optim.steps, minutes=optim.minutes)
    batches = _Batches(len(data), optim.batch_size, generator)
    class_weight = dense_class_weight(data, objective)
    colour_class_weight = None
    if data.patch_colours is not None:
        colour_class_weight = balanced_class_weight(data.patch_colours, objective.class_balance)
    cpu_start, step, window = time.process_time(), 0, []
    bar = tqdm(total=optim.steps, disable=not progress, desc="pretrain", unit="step")
    while budget.progress(step) < 1.0:
        factor = lr_factor(budget.progress(step), optim.warmup)
        for group in optimizer.param_groups:
            group["lr"] = optim.lr * factor
        model.train()
        images = batches.next()
        captions = data.sample_captions(images, generator)
        masked = model.supports_patch_drop and (
            budget.progress(step) < 1.0 - objective.unmasked_tail
        )
        ratio = objective.mask_ratio if masked else 0.0
        keep = random_keep(len(images), data.patch_counts.shape[1], ratio, generator)
        loss, parts = train_step(
            model,
            data,
            images,
            captions,
            objective,
            keep=keep,
            class_weight=class_weight,
            colour_class_weight=colour_class_weight,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        optimizer.step()
        step, window = step + 1, [*window, parts]
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.3f}")
        done = budget.progress(step) >= 1.0
        if step % optim.eval_every == 0 or done:
            record = _record(step, window, optim.lr * factor, model, holdout)
            record.update(wall_s=round(budget.elapsed(), 1))
            log(record)
            final_loss, window = record["loss"], []
    bar.close()
    return TrainSummary(
        steps=step,
        images_seen=step * batches.batch_size,
        wall_s=budget.elapsed(),
        cpu_s=time.process_time() - cpu_start,
        final_loss=final_loss,
    )


def _record(
    step: int, window: list[dict], lr: float, model: nn.Module, holdout: PretrainData | None
) -> dict:
    record: dict = {"step": step}
    for key in window[0]:
        record[key] = round(sum(w[key] for w in window) / len(window), 4)
    record.update(lr=lr, temperature=round(1.0 / model.logit_scale().item(), 4))
    if holdout is not None:
        metrics = evaluate_model(model, holdout)
        record.update(
            holdout_i2t_r1=round(metrics.recall_at_1.image_to_text, 2),
            holdout_t2i_r1=round(metrics.recall_at_1.text_to_image, 2),
            holdout_dense_acc=round(metrics.dense.all_patches, 2),
            holdout_thing_acc=round(metrics.dense.thing_patches, 2),
            holdout_thing_acc_levels=[round(d.thing_patches, 2) for d in metrics.dense_levels],
        )
        record.update({f"holdout_{k}_acc": v for k, v in metrics.negative_accuracy.items()})
        if metrics.colour_levels:
            record["holdout_thing_colour_acc_levels"] = [
                round(d.thing_patches, 2) for d in metrics.colour_levels
            ]
    return record
