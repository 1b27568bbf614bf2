"""DaViT (dual attention vision transformer) as the FIND ``davitd3`` / ``davitd5`` configs use it.

Each stage is a conv embedding followed by ``depth`` pairs of a *spatial* block (multi-head
attention inside 7x7 windows) and a *channel* block (attention between channel groups, over all
tokens). Every block is: depthwise 3x3 conv residual, pre-norm attention residual, depthwise 3x3
conv residual, pre-norm MLP residual. Windows are zero-padded at the bottom/right *after* the
norm, and the padded tokens take part in the attention (as in the official module).

Tokens travel as ``[B,N,C]`` with their grid size ``(H, W)``. Stochastic depth is not
implemented (the backbone is used frozen). Parameter names equal the official module's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from findvl.encoders.backbones.common import MultiScaleBackbone, window_merge, window_partition

Size = tuple[int, int]


def tokens_to_map(x: torch.Tensor, size: Size) -> torch.Tensor:
    """``[B,N,C]`` -> ``[B,C,H,W]``."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


class DepthwiseConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        return self.dw(tokens_to_map(x, size)).flatten(2).transpose(1, 2)  # BxCxHxW -> BxNxC


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(fc1=nn.Linear(dim, hidden), act=nn.GELU(), fc2=nn.Linear(hidden, dim))
        )

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        return self.net(x)


class Residual(nn.Module):
    """``x + fn(norm(x), size)`` (no norm when ``norm`` is ``None``)."""

    def __init__(self, fn: nn.Module, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.norm = norm
        self.fn = fn

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        return x + self.fn(x if self.norm is None else self.norm(x), size)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window x window`` windows."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        b, n, c = x.shape
        windows, padded = window_partition(x.view(b, *size, c), self.window)
        windows = windows.view(-1, self.window * self.window, c)  # B'xTxC
        m, t = windows.shape[:2]
        qkv = self.qkv(windows).reshape(m, t, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x B'xheadsxTxd
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = self.proj((attn @ v).transpose(1, 2).reshape(m, t, c))
        y = window_merge(y.view(-1, self.window, self.window, c), self.window, padded, size)
        return y.view(b, n, c)


class ChannelAttention(nn.Module):
    """Attention between the ``d = C/groups`` channels of each group, over all N tokens."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.groups, c // self.groups)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x BxGxNxd
        attn = ((q * n**-0.5).transpose(-1, -2) @ k).softmax(dim=-1)  # BxGxdxd
        y = (attn @ v.transpose(-1, -2)).transpose(-1, -2)  # BxGxNxd
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class AttentionBlock(nn.Module):
    """conv residual, attention residual (named ``attn_name``), conv residual, MLP residual."""

    def __init__(self, dim: int, attn_name: str, attn: nn.Module, mlp_ratio: float) -> None:
        super().__init__()
        self.attn_name = attn_name
        self.conv1 = Residual(DepthwiseConv(dim))
        self.add_module(attn_name, Residual(attn, nn.LayerNorm(dim)))
        self.conv2 = Residual(DepthwiseConv(dim))
        self.ffn = Residual(Mlp(dim, int(dim * mlp_ratio)), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        x = self.conv1(x, size)
        x = getattr(self, self.attn_name)(x, size)
        x = self.conv2(x, size)
        return self.ffn(x, size)


class DualBlock(nn.Module):
    def __init__(self, *, dim: int, heads: int, groups: int, window: int, mlp_ratio: float):
        super().__init__()
        self.spatial_block = AttentionBlock(
            dim, "window_attn", WindowAttention(dim, heads, window), mlp_ratio
        )
        self.channel_block = AttentionBlock(
            dim, "channel_attn", ChannelAttention(dim, groups), mlp_ratio
        )

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        return self.channel_block(self.spatial_block(x, size), size)


class ConvEmbed(nn.Module):
    """Conv patch embedding with a LayerNorm before (``pre_norm``, on tokens) or after it."""

    def __init__(
        self, *, cin: int, cout: int, kernel: int, stride: int, padding: int, pre_norm: bool
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.proj = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(cin if pre_norm else cout)

    def forward(self, x: torch.Tensor, size: Size) -> tuple[torch.Tensor, Size]:
        """``[B,3,H,W]`` image or ``[B,N,Cin]`` tokens -> ``([B,N',Cout], (H', W'))``."""
        if x.dim() == 3:
            x = tokens_to_map(self.norm(x) if self.pre_norm else x, size)
        x = self.proj(x)
        size = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # BxCxHxW -> BxNxC
        return (x if self.pre_norm else self.norm(x)), size


class DaViT(MultiScaleBackbone):
    """DaViT with four stages; ``res2..res5`` = each stage's tokens (no output norms).

    Args:
        embed_dims: channels per stage.
        depths: dual blocks per stage.
        num_heads: spatial-attention heads per stage.
        num_groups: channel-attention groups per stage.
        patch_size, patch_stride, patch_padding, patch_prenorm: the conv embedding per stage.
        window: spatial attention window.
        mlp_ratio: MLP hidden width over channels.
    """

    def __init__(
        self,
        *,
        embed_dims: tuple[int, ...],
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        num_groups: tuple[int, ...],
        patch_size: tuple[int, ...],
        patch_stride: tuple[int, ...],
        patch_padding: tuple[int, ...],
        patch_prenorm: tuple[bool, ...],
        window: int = 7,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        cins = (3, *embed_dims[:-1])
        self.convs = nn.ModuleList(
            ConvEmbed(
                cin=cins[i],
                cout=embed_dims[i],
                kernel=patch_size[i],
                stride=patch_stride[i],
                padding=patch_padding[i],
                pre_norm=patch_prenorm[i],
            )
            for i in range(len(embed_dims))
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                DualBlock(
                    dim=embed_dims[i],
                    heads=num_heads[i],
                    groups=num_groups[i],
                    window=window,
                    mlp_ratio=mlp_ratio,
                )
                for _ in range(depths[i])
            )
            for i in range(len(embed_dims))
        )
        strides, s = [], 1
        for stride in patch_stride:
            s *= stride
            strides.append(s)
        self._describe(strides, list(embed_dims))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,H,W]`` -> ``{res2: [B,C0,H/4,W/4], ..., res5: [B,C3,H/32,W/32]}``."""
        self.check_pixels(pixels)
        x, size = pixels, (pixels.shape[-2], pixels.shape[-1])
        out = {}
        for name, conv, stage in zip(self.out_strides, self.convs, self.blocks):
            x, size = conv(x, size)
            for block in stage:
                x = block(x, size)
            out[name] = tokens_to_map(x, size).contiguous()
        return out


def davit_d3() -> DaViT:
    """DaViT-d3 of ``configs/find/davitd3_*.yaml``: widths 128-256-512-1024, depths 1-1-9-1."""
    return DaViT(
        embed_dims=(128, 256, 512, 1024),
        depths=(1, 1, 9, 1),
        num_heads=(4, 8, 16, 32),
        num_groups=(4, 8, 16, 32),
        patch_size=(7, 2, 2, 2),
        patch_stride=(4, 2, 2, 2),
        patch_padding=(3, 0, 0, 0),
        patch_prenorm=(False, True, True, True),
    )


def davit_d5() -> DaViT:
    """DaViT-d5 of ``configs/find/davitd5_*.yaml``: widths 256-512-1024-2048, depths 1-1-9-1."""
    return DaViT(
        embed_dims=(256, 512, 1024, 2048),
        depths=(1, 1, 9, 1),
        num_heads=(8, 16, 32, 64),
        num_groups=(8, 16, 32, 64),
        patch_size=(7, 3, 3, 3),
        patch_stride=(4, 2, 2, 2),
        patch_padding=(3, 1, 1, 1),
        patch_prenorm=(False, True, True, True),
    )
