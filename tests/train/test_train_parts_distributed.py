"""Two gloo processes: gathered InfoNCE equals the single-process loss on the whole batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from findvl.train import distributed
from findvl.train.contrastive import infonce

SIZES = (3, 5)  # rows per rank (different on purpose)


def _batch():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(sum(SIZES), 6, generator=g)
    b = torch.randn(sum(SIZES), 6, generator=g)
    return a, b, torch.tensor(1.5)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    info = distributed.init_distributed(backend="gloo")
    try:
        assert (info.rank, info.world_size) == (rank, world_size)
        assert distributed.is_main() == (rank == 0)
        a, b, scale = _batch()
        lo = sum(SIZES[:rank])
        local_a = a[lo : lo + SIZES[rank]].clone().requires_grad_(True)
        local_b = b[lo : lo + SIZES[rank]].clone().requires_grad_(True)
        scale = scale.clone().requires_grad_(True)
        loss = infonce(local_a, local_b, scale)
        loss.backward()
        mean = distributed.all_reduce_mean({"rank": float(rank), "loss": loss.item()})
        assert mean["rank"] == (world_size - 1) / 2
        distributed.barrier()
        save_file(
            {"loss": loss.detach(), "ga": local_a.grad, "gb": local_b.grad, "gs": scale.grad},
            os.path.join(out_dir, f"rank{rank}.safetensors"),
        )
    finally:
        distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_infonce_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert not dist.is_initialized()
    a, b, scale = _batch()
    a.requires_grad_(True)
    b.requires_grad_(True)
    scale.requires_grad_(True)
    ref = infonce(a, b, scale)
    ref.backward()
    results = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    lo = 0
    for r, res in enumerate(results):
        hi = lo + SIZES[r]
        torch.testing.assert_close(res["loss"], ref.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(res["ga"], a.grad[lo:hi], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(res["gb"], b.grad[lo:hi], rtol=1e-5, atol=1e-7)
        lo = hi
    # the scale's gradient is the full one on every rank (it is not split across ranks)
    torch.testing.assert_close(results[0]["gs"], scale.grad, rtol=1e-5, atol=1e-7)
