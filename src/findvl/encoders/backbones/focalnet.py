"""FocalNet (focal modulation networks) as the FIND configs use it, in plain PyTorch.

Two block variants, chosen by ``depthwise``:

* ``focal_dw`` (Focal-T of ``focalt_*``): a 3x3 depthwise conv with a residual before the
  modulation and before the MLP; LayerNorm after each residual sum (post-norm).
* ``focal`` (Focal-L of ``focall_*``): no depthwise convs; LayerNorm on the modulation output
  and on the MLP output before each residual sum.

Both use what every FIND config sets: overlapped conv patch embeddings (stem 7x7 stride 4, with
padding 3 for ``focal_dw`` and 2 for ``focal``; 3x3 stride 2 between stages, LayerNorm after),
post-norm blocks, layer scale, the modulator divided by ``focal_level + 1``, and one LayerNorm
per output (``norm0..norm3``). Stochastic depth is not implemented (the backbone is used
frozen, where it is the identity). Parameter names equal the official module's, so a checkpoint's
``backbone.*`` tensors load with the prefix stripped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from findvl.encoders.backbones.common import MultiScaleBackbone


class Mlp(nn.Module):
    def __init__(self, *, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FocalModulation(nn.Module):
    """Query times a gated sum of ``focal_level`` growing depthwise contexts plus a global one.

    Args:
        dim: channels.
        focal_level: number of depthwise context levels (kernel ``window + 2k`` at level ``k``).
        focal_window: kernel size of the first level.
    """

    def __init__(self, *, dim: int, focal_level: int, focal_window: int) -> None:
        super().__init__()
        self.focal_level = focal_level
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)  # query, context, gates
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()
        self.proj = nn.Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for k in range(focal_level):
            size = focal_window + 2 * k
            conv = nn.Conv2d(dim, dim, size, padding=size // 2, groups=dim, bias=False)
            self.focal_layers.append(nn.Sequential(conv, nn.GELU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,H,W,C]`` -> ``[B,H,W,C]``."""
        c = x.shape[-1]
        y = self.f(x).permute(0, 3, 1, 2).contiguous()  # BxHxWx(2C+L+1) -> Bx(2C+L+1)xHxW
        query, context, gates = torch.split(y, (c, c, self.focal_level + 1), dim=1)
        modulator = 0
        for level, layer in enumerate(self.focal_layers):
            context = layer(context)
            modulator = modulator + context * gates[:, level : level + 1]
        global_context = self.act(context.mean(2, keepdim=True).mean(3, keepdim=True))
        modulator = modulator + global_context * gates[:, self.focal_level :]
        modulator = modulator / (self.focal_level + 1)
        out = (query * self.h(modulator)).permute(0, 2, 3, 1).contiguous()  # BxCxHxW -> BxHxWxC
        return self.proj(out)


class FocalBlock(nn.Module):
    """One post-norm focal modulation block (``depthwise`` selects ``focal_dw`` vs ``focal``)."""

    def __init__(
        self, *, dim: int, focal_level: int, focal_window: int, mlp_ratio: float, depthwise: bool
    ) -> None:
        super().__init__()
        self.depthwise = depthwise
        if depthwise:
            self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim=dim, focal_level=focal_level, focal_window=focal_window
        )
        if depthwise:
            self.dw2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim=dim, hidden=int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.full((dim,), 1e-4))
        self.gamma_2 = nn.Parameter(torch.full((dim,), 1e-4))

    @staticmethod
    def _conv_residual(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        y = x.permute(0, 3, 1, 2).contiguous()  # BxHxWxC -> BxCxHxW
        return (y + conv(y)).permute(0, 2, 3, 1).contiguous()  # BxCxHxW -> BxHxWxC

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,H,W,C]`` -> ``[B,H,W,C]``."""
        if self.depthwise:
            x = self._conv_residual(x, self.dw1)
            x = self.norm1(x + self.gamma_1 * self.modulation(x))
            x = self._conv_residual(x, self.dw2)
            return self.norm2(x + self.gamma_2 * self.mlp(x))
        x = x + self.gamma_1 * self.norm1(self.modulation(x))
        return x + self.gamma_2 * self.norm2(self.mlp(x))


class PatchEmbed(nn.Module):
    """Overlapped conv embedding + LayerNorm: ``[B,Cin,H,W]`` -> ``[B,H/s,W/s,Cout]``."""

    def __init__(self, *, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:  # pad bottom/right up to a multiple of the stride
            x = F.pad(x, (0, -w % self.stride, 0, -h % self.stride))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # BxCxhxw -> BxhxwxC


class FocalStage(nn.Module):
    """``depth`` blocks, then (all stages but the last) a stride-2 patch embedding."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        focal_level: int,
        focal_window: int,
        mlp_ratio: float,
        depthwise: bool,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            FocalBlock(
                dim=dim,
                focal_level=focal_level,
                focal_window=focal_window,
                mlp_ratio=mlp_ratio,
                depthwise=depthwise,
            )
            for _ in range(depth)
        )
        self.downsample = (
            PatchEmbed(cin=dim, cout=2 * dim, kernel=3, stride=2, padding=1) if downsample else None
        )


class FocalNet(MultiScaleBackbone):
    """FocalNet with four stages; outputs ``res2..res5`` at strides 4/8/16/32.

    Args:
        embed_dim: channels of stage 1 (stage ``i`` has ``embed_dim * 2**i``).
        depths: blocks per stage.
        focal_levels: focal levels per stage.
        focal_windows: first-level kernel size per stage.
        depthwise: ``True`` for the ``focal_dw`` variant, ``False`` for ``focal``.
        mlp_ratio: MLP hidden width over channels.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        focal_levels: tuple[int, ...],
        focal_windows: tuple[int, ...],
        depthwise: bool,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(
            cin=3, cout=embed_dim, kernel=7, stride=4, padding=3 if depthwise else 2
        )
        widths = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            FocalStage(
                dim=widths[i],
                depth=depths[i],
                focal_level=focal_levels[i],
                focal_window=focal_windows[i],
                mlp_ratio=mlp_ratio,
                depthwise=depthwise,
                downsample=i < len(depths) - 1,
            )
            for i in range(len(depths))
        )
        for i, width in enumerate(widths):
            self.add_module(f"norm{i}", nn.LayerNorm(width))
        self._describe([4, 8, 16, 32], widths)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B,3,H,W]`` -> ``{res2: [B,C,H/4,W/4], ..., res5: [B,8C,H/32,W/32]}``."""
        self.check_pixels(pixels)
        x = self.patch_embed(pixels)  # BxH/4xW/4xC
        out = {}
        for i, (name, stage) in enumerate(zip(self.out_strides, self.layers)):
            for block in stage.blocks:
                x = block(x)
            norm = getattr(self, f"norm{i}")
            out[name] = norm(x).permute(0, 3, 1, 2).contiguous()  # BxhxwxC -> BxCxhxw
            if stage.downsample is not None:
                x = stage.downsample(x.permute(0, 3, 1, 2))
        return out


def focal_tiny_dw() -> FocalNet:
    """Focal-T of ``configs/find/focalt_*.yaml`` (``focal_dw``): 96 wide, depths 2-2-6-2."""
    return FocalNet(
        embed_dim=96,
        depths=(2, 2, 6, 2),
        focal_levels=(3, 3, 3, 3),
        focal_windows=(3, 3, 3, 3),
        depthwise=True,
    )


def focal_large() -> FocalNet:
    """Focal-L of ``configs/find/focall_*.yaml`` (``focal``): 192 wide, depths 2-2-18-2."""
    return FocalNet(
        embed_dim=192,
        depths=(2, 2, 18, 2),
        focal_levels=(4, 4, 4, 4),
        focal_windows=(3, 3, 3, 3),
        depthwise=False,
    )
