"""Arithmetic of a call and the machine's matmul rate: the floor under a timing.

``count_gflop(fn)`` counts the floating-point operations of the matrix products, convolutions
and attention ``fn`` runs (``torch.utils.flop_counter``, with the CPU attention kernel added:
it has no formula there); ``matmul_gflops()`` measures what one fp32 matmul reaches on this
machine with the current thread count. ``gflop / rate`` is then the time the call would take if
every one of its products ran at that rate: no exact implementation of the same arithmetic
runs faster here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """``Q K^T`` and ``A V`` of ``[B,H,Nq,D]`` queries over ``Nk`` keys."""
    b, h, nq, d = query
    return 2 * b * h * nq * key[-2] * (d + value[-1])


_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


def count_gflop(fn: Callable[[], object], model: torch.nn.Module) -> float:
    """GFLOP of the products ``fn`` runs (one call of ``model``, without gradients).

    The counter's module hooks expect every input that requires a gradient to have a graph,
    which a parameter passed as an input under ``no_grad`` has not; the parameters of
    ``model`` are therefore marked as not requiring one while counting."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
            fn()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return counter.get_total_flops() / 1e9


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one ``[size,size]`` fp32 matmul (median of ``repeats``, after a warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9
