"""SAM's ViT image encoder with the simple FPN the FIND ``samb_*`` configs put on it.

The ViT is SAM's (``segment_anything``): 16x16 patches, an absolute position embedding for the
pretraining grid (so the input must be exactly ``img_size x img_size``; FIND pads its batch to
1024), blocks with windowed (14x14, zero-padded) or global attention, both with decomposed
relative position terms. SAM's own neck is replaced by FIND's simple FPN on the final tokens
(``[B,C,H/16,W/16]``):

* ``res2`` (stride 4): 2x2 transposed conv, GroupNorm(1), GELU, 2x2 transposed conv,
  GroupNorm(1), 1x1 conv, GroupNorm(1), GELU;
* ``res3`` (stride 8): 2x2 transposed conv, GroupNorm(1), 1x1 conv, GroupNorm(1), GELU;
* ``res4`` (stride 16): 1x1 conv, GroupNorm(1), GELU;
* ``res5`` (stride 32): 2x2 stride-2 conv, GroupNorm(1), 1x1 conv, GroupNorm(1), GELU.

Parameter names equal the official module's (``patch_embed``, ``pos_embed``, ``blocks.*``,
``neck.down_{4,8,16,32}.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from findvl.encoders.backbones.common import MultiScaleBackbone, window_merge, window_partition


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def relative_table(size_q: int, size_k: int, table: torch.Tensor) -> torch.Tensor:
    """``[L,d]`` relative embeddings -> ``[size_q, size_k, d]`` (resampled if L differs)."""
    length = 2 * max(size_q, size_k) - 1
    if table.shape[0] != length:
        table = F.interpolate(table.T[None], size=length, mode="linear")[0].T
    q = torch.arange(size_q, device=table.device)[:, None] * max(size_k / size_q, 1.0)
    k = torch.arange(size_k, device=table.device)[None, :] * max(size_q / size_k, 1.0)
    return table[(q - k + (size_k - 1) * max(size_q / size_k, 1.0)).long()]


class Attention(nn.Module):
    """Multi-head attention over an ``h x w`` grid with decomposed relative positions.

    Args:
        dim: channels.
        num_heads: heads.
        grid: the ``(h, w)`` grid the relative tables are sized for.
    """

    def __init__(self, *, dim: int, num_heads: int, grid: tuple[int, int]) -> None:
        super().__init__()
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,h,w,C]`` -> ``[B,h,w,C]``."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, h * w, -1)  # 3 x (B*heads)xNxd
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*heads)xNxN
        grid_q = q.reshape(b * self.num_heads, h, w, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, relative_table(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, relative_table(w, w, self.rel_pos_w))
        attn = attn.view(-1, h, w, h, w) + rel_h[..., :, None] + rel_w[..., None, :]
        attn = attn.view(-1, h * w, h * w).softmax(dim=-1)
        y = (attn @ v).view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4)
        return self.proj(y.reshape(b, h, w, -1))


class Block(nn.Module):
    """Pre-norm ViT block; attention in ``window`` windows (0: global over the whole grid)."""

    def __init__(
        self, *, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: tuple[int, int]
    ) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim=dim, num_heads=num_heads, grid=grid if window == 0 else (window, window)
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,h,w,C]`` -> ``[B,h,w,C]``."""
        y = self.norm1(x)
        if self.window > 0:
            size = (y.shape[1], y.shape[2])
            windows, padded = window_partition(y, self.window)
            y = window_merge(self.attn(windows), self.window, padded, size)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, *, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # BxCxhxw -> BxhxwxC


class SimpleFPN(nn.Module):
    """FIND's four-level neck on the ViT's stride-``p`` map (see the module docstring).

    Args:
        in_dim: channels of the ViT tokens.
        out_dims: channels of res2..res5.
    """

    def __init__(self, *, in_dim: int, out_dims: tuple[int, int, int, int]) -> None:
        super().__init__()
        c4 = max(2 * out_dims[0], in_dim // 2)
        self.down_4 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c4, 2, stride=2),
            nn.GroupNorm(1, c4),
            nn.GELU(),
            nn.ConvTranspose2d(c4, c4 // 2, 2, stride=2),
            nn.GroupNorm(1, c4 // 2),
            nn.Conv2d(c4 // 2, out_dims[0], 1),
            nn.GroupNorm(1, out_dims[0]),
            nn.GELU(),
        )
        c8 = max(out_dims[1], in_dim // 2)
        self.down_8 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c8, 2, stride=2),
            nn.GroupNorm(1, c8),
            nn.Conv2d(c8, out_dims[1], 1),
            nn.GroupNorm(1, out_dims[1]),
            nn.GELU(),
        )
        self.down_16 = nn.Sequential(
            nn.Conv2d(in_dim, out_dims[2], 1), nn.GroupNorm(1, out_dims[2]), nn.GELU()
        )
        c32 = max(out_dims[3], 2 * in_dim)
        self.down_32 = nn.Sequential(
            nn.Conv2d(in_dim, c32, 2, stride=2),
            nn.GroupNorm(1, c32),
            nn.Conv2d(c32, out_dims[3], 1),
            nn.GroupNorm(1, out_dims[3]),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,C,h,w]`` -> ``{res2: [B,O0,4h,4w], res3: [..,2h,2w], res4: [..,h,w],
        res5: [..,h/2,w/2]}``."""
        return {
            "res2": self.down_4(x),
            "res3": self.down_8(x),
            "res4": self.down_16(x),
            "res5": self.down_32(x),
        }


class SamViT(MultiScaleBackbone):
    """SAM's ViT + FIND's simple FPN; ``res2..res5`` at strides ``p/4, p/2, p, 2p``.

    Args:
        img_size: the one square input side (the position embedding covers its grid).
        patch_size: ``p``.
        embed_dim, depth, num_heads, mlp_ratio: the ViT.
        window: window of the non-global blocks.
        global_blocks: indices of the blocks with global attention.
        out_dims: channels of res2..res5.
    """

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        window: int,
        global_blocks: tuple[int, ...],
        out_dims: tuple[int, int, int, int],
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        grid = (img_size // patch_size, img_size // patch_size)
        self.input_size = img_size
        self.size_divisibility = img_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                window=0 if i in global_blocks else window,
                grid=grid,
            )
            for i in range(depth)
        )
        self.neck = SimpleFPN(in_dim=embed_dim, out_dims=out_dims)
        p = patch_size
        self._describe([p // 4, p // 2, p, 2 * p], list(out_dims))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,S,S]`` (``S = img_size``) -> ``{res2..res5}`` (see :class:`SimpleFPN`)."""
        self.check_pixels(pixels)
        x = self.patch_embed(pixels) + self.pos_embed  # BxhxwxC
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))  # BxhxwxC -> BxCxhxw


def sam_vit_b() -> SamViT:
    """SAM ViT-B (``configs/find/samb_*.yaml``, ``VIT.SIZE base``) at 1024x1024."""
    return SamViT(
        img_size=1024,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        window=14,
        global_blocks=(2, 5, 8, 11),
        out_dims=(128, 256, 512, 1024),
    )
