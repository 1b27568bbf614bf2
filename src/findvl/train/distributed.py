"""Process-group helpers for ``torchrun`` (DDP) runs; single-process runs need none of them.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and starts a ``nccl`` (CUDA) or ``gloo`` (CPU) group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from err


def init_distributed(*, backend: str | None = None, init_method: str = "env://") -> DistInfo:
    """Start the process group from ``torchrun``'s environment (no-op without ``WORLD_SIZE``).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; by default nccl when CUDA is available, else gloo.
        init_method: rendezvous URL (``env://`` reads ``MASTER_ADDR``/``MASTER_PORT``).

    Returns:
        The :class:`DistInfo`; on CUDA the current device is set to ``LOCAL_RANK``.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=backend or ("nccl" if cuda else "gloo"),
            init_method=init_method,
            rank=rank,
            world_size=world_size,
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def is_initialized() -> bool:
    """Whether a process group is running."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0 (the process that logs and saves)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if is_initialized() and get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(
    values: dict[str, float], *, device: torch.device | None = None
) -> dict[str, float]:
    """Mean of each value over all processes (every process must pass the same keys).

    Args:
        values: ``{name: number}``, e.g. this process's loss terms.
        device: device of the reduction tensor (CUDA for nccl); CPU by default.
    """
    if not is_initialized() or get_world_size() == 1 or not values:
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    buf = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    buf /= get_world_size()
    return dict(zip(keys, buf.tolist()))


def shard_indices(
    num_items: int,
    *,
    epoch: int,
    seed: int,
    rank: int,
    world_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    start: int = 0,
) -> np.ndarray:
    """This rank's item indices for one epoch (``DistributedSampler`` semantics).

    The epoch's permutation depends only on ``(seed, epoch)``; ranks take interleaved slices
    (``rank::world_size``) after the list is padded by wrapping (or cut with ``drop_last``) to
    a multiple of ``world_size``, so every rank gets the same count.

    Args:
        num_items: dataset size.
        epoch, seed: define the permutation.
        rank, world_size: this process's slice.
        shuffle: permute (else natural order).
        drop_last: drop the tail instead of padding.
        start: skip this rank's first ``start`` indices (resume mid-epoch).

    Returns:
        ``[n]`` int64 indices.
    """
    if num_items < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"invalid shard: num_items={num_items}, rank={rank}, world_size={world_size}"
        )
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(num_items)
    else:
        order = np.arange(num_items)
    if drop_last:
        total = (num_items // world_size) * world_size
        order = order[:total]
    elif num_items and num_items % world_size:
        pad = world_size - num_items % world_size
        order = np.concatenate([order, np.resize(order, pad)])
    shard = order[rank::world_size].astype(np.int64)
    if not 0 <= start <= len(shard):
        raise ValueError(f"start={start} is outside this rank's {len(shard)} indices")
    return shard[start:]


def cleanup() -> None:
    """Destroy the process group if one is running."""
    if is_initialized():
        dist.destroy_process_group()
