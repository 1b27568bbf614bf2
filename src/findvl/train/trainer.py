"""The joint multi-task training loop: one forward per batch covering all six tasks.

Every source of randomness of step ``s`` (which images, augmentation, prompt points, loss
points) is derived from ``(seed, s)``, so a run killed at any step and resumed from its last
checkpoint continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from findvl.build import build_model
from findvl.data.readers.dataset import load_dataset
from findvl.data.readers.vocabulary import dataset_vocabulary
from findvl.data.training import TrainExample
from findvl.model.find import FindModel
from findvl.model.requests import (
    GenericSegmentation,
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    InterleaveRetrieval,
    InterleaveSegmentation,
)
from findvl.train import distributed as dist
from findvl.train.batches import BatchSource, batch_loader
from findvl.train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from findvl.train.checkpoint_integrity import clean_interrupted_saves
from findvl.train.config import TrainConfig, load_train_config
from findvl.train.corrections import correction_round, wants_correction
from findvl.train.criterion import FindCriterion
from findvl.train.logging import JsonlLogger, ThroughputMeter, progress_bar, read_jsonl
from findvl.train.losses import LossWeights
from findvl.train.optim import (
    OptimizerConfig,
    ScheduleConfig,
    build_optimizer,
    build_scheduler,
    clip_grad_norm,
)
from findvl.train.requests import build_requests
from findvl.train.run_lock import RunLock


def _generator(seed: int, step: int, micro: int, rank: int, which: int) -> torch.Generator:
    mixed = np.random.default_rng([seed, step, micro, rank, which]).integers(0, 2**62)
    return torch.Generator().manual_seed(int(mixed))


_REQUEST_KINDS = (
    GenericSegmentation,
    GroundedSegmentation,
    InteractiveSegmentation,
    ImageTextRetrieval,
    InterleaveSegmentation,
    InterleaveRetrieval,
)


class Trainer:
    """Builds the model, optimizer and data from a :class:`TrainConfig` and trains.

    Args:
        config: the whole run configuration.
        run_dir: where config, logs and checkpoints go.
        progress: show a progress bar.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, progress: bool = True) -> None:
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        self.lock = RunLock(self.run_dir)  # one writer per run directory (main process)
        self.info = dist.init_distributed() if dist.get_world_size() > 1 or _torchrun() else None
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(config.seed)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model: FindModel = build_model(config.model).to(config.device)
        self.weights = LossWeights.from_dict(dict(config.loss))
        self.criterion = FindCriterion(self.weights, match_every_layer=config.match_every_layer)
        # a correction round and the training forward share one encoding of the batch
        # (single process, no autocast); False encodes twice (benchmarks/train_step.py)
        self.share_encoding = True
        o = config.optim
        self.optimizer = build_optimizer(
            self.model,
            OptimizerConfig(lr=o.lr, weight_decay=o.weight_decay, clip_grad_norm=o.clip_grad_norm),
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            ScheduleConfig(total_steps=config.steps, kind=o.schedule, warmup_steps=o.warmup_steps),
        )
        self.vocab = dataset_vocabulary(config.data.root, config.data.split)
        self.source = BatchSource(
            load_dataset(config.data.root, config.data.split), self.vocab, config
        )
        if _frozen_language(config):
            self.model.calibrate_text(self.source.calibration_texts())
        self.step = 0
        self.wrapped: nn.Module = self.model
        if self.world > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.model, find_unused_parameters=True
            )

    def _own_run_dir(self) -> None:
        """Take the run directory's lock (main process) and clear killed saves' leftovers."""
        if dist.is_main() and not self.lock.held:
            self.lock.acquire()
            clean_interrupted_saves(self.run_dir)

    def resume(self) -> bool:
        """Load the latest complete checkpoint of the run directory, if any.

        The config must equal the checkpoint's except ``steps``, which may grow (the run is
        extended; the schedule follows the new length from the checkpoint's step on).
        """
        self._own_run_dir()
        try:
            latest = find_latest(self.run_dir)
            if latest is None:
                return False
            saved = json.loads((latest / "state.json").read_text(encoding="utf-8"))
            saved = saved.get("config", {}).get("train")
            if saved is not None:
                _check_resumable(latest, saved, self.config)
            state = load_checkpoint(
                latest, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler
            )
            if state.step > self.config.steps:
                raise ValueError(
                    f"{latest}: the checkpoint is at step {state.step}, beyond steps="
                    f"{self.config.steps}; pass a larger --steps"
                )
        except BaseException:
            self.lock.release()
            raise
        self.step = state.step
        return True

    def save(self) -> Path | None:
        if not dist.is_main():
            return None
        return save_checkpoint(
            self.run_dir,
            step=self.step,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            config={
                "train": json.loads(self.config.to_json()),
                "vocabulary": self.vocab.__dict__
                | {"index": {str(k): v for k, v in self.vocab.index.items()}},
            },
            data_position={"step": self.step},
            keep_last=self.config.keep_last,
            model_config=self.config.model,  # a model file: learned weights + config.json
            vocabulary={"names": self.vocab.names, "isthing": self.vocab.isthing},
        )

    def train_step(self, batches: Iterator[list[TrainExample]] | None = None) -> dict[str, float]:
        """One optimizer step (``accumulation`` micro-batches); returns the loss terms.

        Args:
            batches: where this step's micro-batches come from (``fit`` passes its loader);
                None reads them in the loop. Both give the same examples.
        """
        c = self.config
        self.model.train()
        for part, cfg in (
            (self.model.vision, c.model.vision),
            (self.model.language, c.model.language),
        ):
            if not cfg.trainable:
                part.eval()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro in range(c.optim.accumulation):
            examples = (
                next(batches)
                if batches is not None
                else self.source.batch(self.step, micro, self.rank, self.world)
            )
            images = [ex.image for ex in examples]  # or their encoding, shared below
            autocast = c.amp and c.device.startswith("cuda")
            if wants_correction(c.seed, self.step, micro, c.data.correction_prob):
                features = None
                if self.share_encoding and self.wrapped is self.model and not autocast:
                    images = features = self.model.encode_images(images)
                examples = correction_round(
                    self.model,
                    examples,
                    generator=_generator(c.seed, self.step, micro, self.rank, 2),
                    features=features,
                )
            requests = build_requests(
                examples,
                self.vocab.names,
                captions=self.weights.retrieval_captions,
                negatives=self.weights.retrieval_negatives,
            )
            if self.world > 1:
                requests = _common_requests(requests, self.info.device)
            amp = (
                torch.autocast("cuda", dtype=torch.bfloat16)
                if autocast
                else contextlib.nullcontext()
            )
            with amp:
                out = self.wrapped(
                    images,
                    requests,
                    generator=_generator(c.seed, self.step, micro, self.rank, 0),
                    all_layer_masks=self.criterion.dense_masks,
                    dense_masks=self.criterion.dense_masks,
                )
                terms = self.criterion(
                    out, examples, _generator(c.seed, self.step, micro, self.rank, 1)
                )
            (terms["total"] / c.optim.accumulation).backward()
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) / c.optim.accumulation
        grad_norm = clip_grad_norm(self.model.parameters(), c.optim.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        totals = dist.all_reduce_mean(totals, device=self.info.device if self.info else None)
        totals["grad_norm"] = float(grad_norm)
        return totals

    def fit(self, *, stop_after: float | None = None) -> dict:
        """Train to ``config.steps`` (or until ``stop_after`` seconds have passed)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._own_run_dir()
        try:
            return self._fit(stop_after)
        finally:
            self.lock.release()

    def _fit(self, stop_after: float | None) -> dict:
        c = self.config
        if dist.is_main():
            _write_atomic(self.run_dir / "config.json", c.to_json())
            _truncate_log(self.run_dir / "train.jsonl", self.step)
        logger = JsonlLogger(self.run_dir / "train.jsonl")
        meter = ThroughputMeter()
        bar = progress_bar(c.steps, initial=self.step, enabled=self.progress and dist.is_main())
        start, last = time.time(), {}
        batches = batch_loader(self.source, start_step=self.step, rank=self.rank, world=self.world)
        while self.step < c.steps:
            last = self.train_step(batches)
            meter.update(c.batch_size * c.optim.accumulation * self.world)
            bar.update(1)
            bar.set_postfix(loss=f"{last['total']:.3f}")
            if self.step % c.log_every == 0 or self.step == c.steps:
                logger.log(
                    step=self.step,
                    lr=self.scheduler.get_last_lr()[0],
                    images_per_s=meter.rate,
                    **last,
                )
            if self.step % c.checkpoint_every == 0 and self.step < c.steps:
                self.save()
            if stop_after is not None and time.time() - start > stop_after:
                break
        bar.close()
        path = self.save()
        summary = {
            "steps": self.step,
            "seconds": time.time() - start,
            "final": last,
            "checkpoint": str(path),
            "rank": self.rank,
            "parameter_checksum": parameter_checksum(self.model),
        }
        if dist.is_main():
            _write_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        logger.close()
        return summary


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, object] = {}
    for key, sub in value.items():
        out.update(_flat(sub, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _check_resumable(path: Path, saved: dict, current: TrainConfig) -> None:
    """``ValueError`` naming the keys (other than ``steps``) whose values differ; the saved
    config is rebuilt first, so keys it predates compare by their defaults."""
    rebuilt = json.loads(load_train_config(saved).to_json())
    old, new = _flat(rebuilt), _flat(json.loads(current.to_json()))
    differing = sorted(
        k for k in old.keys() | new.keys() if k != "steps" and old.get(k) != new.get(k)
    )
    if differing:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing[:8])
        more = f" (and {len(differing) - 8} more)" if len(differing) > 8 else ""
        raise ValueError(
            f"{path}: the checkpoint was written with a different config ({shown}{more}); "
            "only steps may change on --resume"
        )


def _frozen_language(config: TrainConfig) -> bool:
    lang = config.model.language
    return lang.kind == "hf" or not lang.trainable


def _common_requests(requests: list, device: torch.device) -> list:
    """Keep the tasks every process has (the retrieval losses all-gather, so the set of tasks
    must agree across processes or the job deadlocks)."""
    kinds = _REQUEST_KINDS
    present = torch.tensor([any(isinstance(r, k) for r in requests) for k in kinds], device=device)
    present = present.to(torch.int32)
    torch.distributed.all_reduce(present, op=torch.distributed.ReduceOp.MIN)
    keep = tuple(k for k, flag in zip(kinds, present.tolist()) if flag)
    return [r for r in requests if isinstance(r, keep)]


def parameter_checksum(model: nn.Module) -> str:
    """SHA-256 of every state-dict tensor (name, dtype, shape and bytes, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records of steps after ``step`` (a resumed run redoes them)."""
    if not path.is_file():
        return
    records = read_jsonl(path)
    kept = [r for r in records if int(r.get("step", 0)) <= step]
    if len(kept) != len(records):
        _write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def _torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
