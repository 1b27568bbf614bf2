"""Block-sparse attention plans for the interface sequence (exact, cheaper than one dense mask).

The compiled prototypes let a slot attend only a few slots, nearly always of its own task: in a
joint training forward of the quickstart model the 445 slots of the conditional attention fall
into 15 groups that never attend each other (the largest has 69 slots), so the dense ``445²``
mask is 87% blocked. A :class:`BlockPlan` reorders the sequence so that each group is
contiguous, packs small groups into blocks, and attention runs block by block (the projections
stay one matmul over the whole sequence). Since no allowed pair crosses two blocks, every row
attends exactly the keys it attends under the dense mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Blocks are filled with groups up to this many rows (a larger single group is its own block).
BLOCK_ROWS = 96


def connected_groups(keys: list[str], pairs: set[tuple[str, str]]) -> list[list[str]]:
    """Partition ``keys`` into groups closed under the (symmetrised) ``pairs``, in key order."""
    parent = {k: k for k in keys}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in pairs:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(root(k), []).append(k)
    return list(groups.values())


def pack(groups: list[list[str]], sizes: dict[str, int], capacity: int) -> list[list[str]]:
    """Greedy first-fit (largest first) of ``groups`` into blocks of at most ``capacity`` rows."""
    weight = {id(g): sum(sizes[k] for k in g) for g in groups}
    blocks: list[tuple[int, list[str]]] = []
    for g in sorted(groups, key=lambda g: -weight[id(g)]):
        for i, (used, keys) in enumerate(blocks):
            if used + weight[id(g)] <= capacity:
                blocks[i] = (used + weight[id(g)], keys + g)
                break
        else:
            blocks.append((weight[id(g)], list(g)))
    return [keys for _, keys in blocks]


@dataclass
class BlockPlan:
    """Row blocks (and their key columns) of one attention.

    Attributes:
        order: row slot keys in block order (blocks are contiguous in this order).
        row_index: per block, ``[n_b]`` row positions in the original (dense) row order.
        key_index: per block, ``[k_b]`` key positions in the original key order.
        row_sizes: rows per block.
        inverse: ``[N]``: position of each original row in the block order.
    """

    order: list[str]
    row_index: list[torch.Tensor]
    key_index: list[torch.Tensor]
    row_sizes: list[int]
    inverse: torch.Tensor

    def blocks_of(self, allowed: torch.Tensor) -> list[torch.Tensor]:
        """``[B,N,K]`` dense mask -> per block ``[B,n_b,k_b]``."""
        return [
            allowed.index_select(1, r).index_select(2, k)
            for r, k in zip(self.row_index, self.key_index)
        ]


def plan_blocks(
    rows: list[tuple[str, int]],
    keys: list[tuple[str, int]],
    pairs: set[tuple[str, str]],
    *,
    capacity: int = BLOCK_ROWS,
    device: torch.device | None = None,
) -> BlockPlan:
    """Plan blocks for ``rows`` attending ``keys`` (``(slot key, length)`` in sequence order).

    ``pairs`` are the allowed ``(row key, key key)`` slot pairs; a row key and a key key with
    the same name are the same slot (self-attention). Keys attended by no row are left out.
    """
    names = [k for k, _ in rows] + [f"key:{k}" for k, _ in keys]
    links = {(r, f"key:{k}") for r, k in pairs}
    links |= {(r, f"key:{r}") for r, _ in rows if any(r == k for k, _ in keys)}
    groups = connected_groups(names, links)
    row_sizes = dict(rows)
    row_groups = [[k for k in g if k in row_sizes] for g in groups]
    row_groups = [g for g in row_groups if g]
    blocks = pack(row_groups, row_sizes, capacity)
    group_of = {k: i for i, g in enumerate(groups) for k in g}
    row_start, key_start = _starts(rows), _starts(keys)
    order, row_index, key_index = [], [], []
    for block in blocks:
        order += block
        row_index.append(_positions(block, row_start, row_sizes, device))
        member = {group_of[k] for k in block}
        cols = [k for k, _ in keys if group_of[f"key:{k}"] in member]
        key_index.append(_positions(cols, key_start, dict(keys), device))
    flat = torch.cat(row_index) if row_index else torch.zeros(0, dtype=torch.long, device=device)
    inverse = torch.empty_like(flat)
    inverse[flat] = torch.arange(flat.numel(), device=flat.device)
    sizes = [sum(row_sizes[k] for k in b) for b in blocks]
    return BlockPlan(order, row_index, key_index, sizes, inverse)


def _starts(items: list[tuple[str, int]]) -> dict[str, int]:
    starts, at = {}, 0
    for k, n in items:
        starts[k] = at
        at += n
    return starts


def _positions(keys, starts, sizes, device) -> torch.Tensor:
    parts = [torch.arange(starts[k], starts[k] + sizes[k]) for k in keys]
    out = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    return out.to(device)
