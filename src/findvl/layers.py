"""Post-norm attention and FFN layers with the parameter names of the released FIND decoder.

Masks are boolean with ``True`` = may attend (the SDPA convention). A query row whose keys are
all blocked gets a zero attention output -- the released kernel's ``nan_to_num`` semantics --
then the usual output bias, residual and LayerNorm; gradients stay finite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from findvl.model.blocks import BlockPlan


class MultiheadAttention(nn.Module):
    """Multi-head attention, parameter layout of ``nn.MultiheadAttention`` (packed in-proj).

    Args:
        dim: model width D.
        num_heads: heads H (D divisible by H).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide hidden_dim={dim}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project_kv(
        self, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value projections, ``[B,Nk,D]`` -> ``[B,H,Nk,D/H]`` each (cacheable)."""
        b, _, d = key.shape
        h = self.num_heads
        _, wk, wv = self.in_proj_weight.chunk(3)
        _, bk, bv = self.in_proj_bias.chunk(3)
        k = F.linear(key, wk, bk).view(b, -1, h, d // h).transpose(1, 2)  # BxNxD -> BxHxNxd
        v = F.linear(value, wv, bv).view(b, -1, h, d // h).transpose(1, 2)
        return k, v

    def _qkv(self, query, key, value, prefix, *, split: bool = False):
        """Projected heads; with ``split`` the keys and values stay lists of parts (the cached
        prefix, then the projected ``key``), else one tensor each."""
        b, nq, d = query.shape
        h = self.num_heads
        wq, bq = self.in_proj_weight.chunk(3)[0], self.in_proj_bias.chunk(3)[0]
        q = F.linear(query, wq, bq).view(b, nq, h, d // h).transpose(1, 2)  # BxHxNxd
        k, v = self.project_kv(key, value)
        ks, vs = ([prefix[0], k], [prefix[1], v]) if prefix is not None else ([k], [v])
        if split:
            return q, ks, vs
        return q, _cat(ks), _cat(vs)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        allowed: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``query [B,Nq,D]``, ``key/value [B,Nk,D]``, ``allowed [B,Nq,Nk]`` -> ``[B,Nq,D]``.

        ``prefix``: ``(key, value)`` already projected (:meth:`project_kv`), ``[B,H,Np,D/H]``,
        attended before ``key``; ``allowed`` then covers ``Np + Nk`` keys.
        """
        b, nq, d = query.shape
        q, k, v = self._qkv(query, key, value, prefix)
        any_allowed = allowed.any(-1, keepdim=True)  # BxNqx1
        safe = allowed | ~any_allowed  # fully blocked rows attend everything, then are zeroed
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe[:, None])
        out = out.transpose(1, 2).reshape(b, nq, d) * any_allowed
        return self.out_proj(out)

    def forward_blocks(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        plan: BlockPlan,
        allowed: list[torch.Tensor],
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Block-sparse :meth:`forward`: row block ``i`` (``plan.row_index[i]``) attends only
        keys ``plan.key_index[i]`` under ``allowed[i] [B,n_i,k_i]``. Equals :meth:`forward`
        with the dense mask when no allowed pair lies outside the blocks."""
        b, nq, d = query.shape
        h = self.num_heads
        q, ks, vs = self._qkv(query, key, value, prefix, split=True)
        outs = []
        for rows, cols, mask in zip(plan.row_index, plan.key_index, allowed):
            if cols.numel() == 0:
                outs.append(q.new_zeros(b, h, rows.numel(), d // h))
                continue
            any_allowed = mask.any(-1, keepdim=True)
            safe = mask | ~any_allowed
            out = F.scaled_dot_product_attention(
                take_positions([q], rows),
                take_positions(ks, cols),
                take_positions(vs, cols),
                attn_mask=safe[:, None],
            )
            outs.append(out * any_allowed[:, None])
        out = torch.cat(outs, 2).index_select(2, plan.inverse)  # back to the dense row order
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, d))


def _cat(parts: list[torch.Tensor], dim: int = 2) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def take_positions(parts: list[torch.Tensor], index: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Positions ``index`` (along ``dim``) of the concatenation of ``parts`` along ``dim``: a
    view when they are one run of consecutive positions inside one part (a block's image
    keys), else a copy. Either way the same values. (Under ``torch.compile`` / export: always
    the copy, which needs no look at the index values.)"""
    if torch.compiler.is_compiling() or index.numel() == 0:
        return _cat(parts, dim).index_select(dim, index)
    n = index.numel()
    start = int(index[0])
    if torch.equal(index, torch.arange(start, start + n, device=index.device)):
        offset = 0
        for part in parts:
            if offset <= start and start + n <= offset + part.shape[dim]:
                return part.narrow(dim, start - offset, n)
            offset += part.shape[dim]
    return _cat(parts, dim).index_select(dim, index)


class CrossAttentionLayer(nn.Module):
    """``x = LN(x + Attn(q=x+query_pos, k=memory+pos, v=memory))`` (post-norm)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x, memory, allowed, pos, query_pos, plan: BlockPlan | None = None, prefix=None
    ):
        """``allowed``: the dense ``[B,N,K]`` mask, or with ``plan`` its per-block parts.
        ``prefix``: projected ``(key, value)`` of keys before ``memory`` (a cached image)."""
        if plan is None:
            out = self.multihead_attn(x + query_pos, memory + pos, memory, allowed, prefix)
        else:
            out = self.multihead_attn.forward_blocks(
                x + query_pos, memory + pos, memory, plan, allowed, prefix
            )
        return self.norm(x + out)


class SelfAttentionLayer(nn.Module):
    """``x = LN(x + Attn(q=k=x+pos, v=x))`` (post-norm)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, allowed, pos, plan: BlockPlan | None = None):
        """``allowed``: the dense ``[B,N,N]`` mask, or with ``plan`` its per-block parts."""
        qk = x + pos
        if plan is None:
            return self.norm(x + self.self_attn(qk, qk, x, allowed))
        return self.norm(x + self.self_attn.forward_blocks(qk, qk, x, plan, allowed))


class FFNLayer(nn.Module):
    """``x = LN(x + W2 relu(W1 x))`` (post-norm)."""

    def __init__(self, dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """A ReLU MLP with ``num_layers`` linear layers (no activation after the last)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def sine_positions(length: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """``[1,length,dim]`` the Transformer's sine-cosine codes of positions ``0..length-1``
    (channel ``2i`` the sine and ``2i+1`` the cosine of ``p / temperature^(2i/dim)``)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = temperature ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    codes = torch.zeros(length, dim)
    codes[:, 0::2] = (position / freq).sin()
    codes[:, 1::2] = (position / freq[: dim // 2]).cos()
    return codes[None]


class PositionEmbeddingSine(nn.Module):
    """DETR's normalised sine position embedding, computed over each image's valid region.

    Args:
        num_pos_feats: half the output channels.
        temperature: frequency base.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature

    def forward(self, valid: torch.Tensor) -> torch.Tensor:
        """``valid [B,H,W]`` bool -> ``[B,2*num_pos_feats,H,W]``."""
        v = valid.float()
        y = v.cumsum(1)
        x = v.cumsum(2)
        eps, scale = 1e-6, 2 * torch.pi
        y = y / (y.amax(dim=(1, 2), keepdim=True) + eps) * scale
        x = x / (x.amax(dim=(1, 2), keepdim=True) + eps) * scale
        n = self.num_pos_feats
        dim_t = torch.arange(n, dtype=torch.float32, device=valid.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / n)
        px, py = x[..., None] / dim_t, y[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)  # BxHxWxC -> BxCxHxW
