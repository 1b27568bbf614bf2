"""Caches of exact inference: class tables per vocabulary and image features batched together.

Both caches are keyed by a *weights version* (:func:`weights_version`): the optimizer steps of
the process, and the identity, storage and in-place version counter of every tensor the cached
value was computed from. An optimizer step, ``load_state_dict`` or ``.to(device)`` changes it,
so a cached value is never served for weights it was not computed with. (Writes through
``tensor.data`` bypass the version counter; call :meth:`ClassTableCache.clear` after them.)

:func:`stack_features` (and :func:`stack_caches` for their interface caches) pads separately
encoded images to one canvas so that one interface forward answers the prompts of several
images exactly as one forward per image does: padded cells are marked invalid and the
interface never attends them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from findvl.encoders.pixel_decoder import PixelFeatures
from findvl.encoders.preprocess import ImageBatch
from findvl.model.sequence_types import ImageFeatures, InterfaceImageCache, MaskFeatures

#: A weights version: the optimizer steps taken in this process, then per tensor ``(id, data
#: pointer, dtype, in-place version)``.
WeightsVersion = tuple

# Fused optimizer kernels (the trainer's AdamW) update parameters without bumping their version
# counters, so every optimizer step of the process is counted too (a global post-step hook,
# registered at the first weights_version call): any step invalidates every cached value.
_optimizer_steps = 0
_step_hook = None


def _count_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


def optimizer_steps() -> int:
    """Optimizer steps taken in this process since the first :func:`weights_version` call."""
    global _step_hook
    if _step_hook is None:
        _step_hook = register_optimizer_step_post_hook(_count_step)
    return _optimizer_steps


def weights_version(*parts: nn.Module | torch.Tensor | None) -> WeightsVersion | None:
    """The version of the parameters and buffers of ``parts`` (modules or tensors).

    Changes whenever one of them is updated in place (``copy_``, ``load_state_dict``), an
    optimizer takes a step, or a tensor is replaced or moved. None when a tensor has no version
    counter (inference tensors): do not cache then.
    """
    tensors: list[torch.Tensor] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, torch.Tensor):
            tensors.append(part)
        else:
            tensors.extend(part.parameters())
            tensors.extend(part.buffers())
    try:
        own = tuple((id(t), t.data_ptr(), t.dtype, t._version) for t in tensors)
        return (optimizer_steps(), *own)
    except RuntimeError:  # inference tensors carry no version counter
        return None


def caching_allowed(module: nn.Module) -> bool:
    """Cached values carry no gradient and no train-mode randomness: use them only under
    ``no_grad`` / ``inference_mode`` with the module in eval mode."""
    return not torch.is_grad_enabled() and not module.training


class ClassTableCache:
    """Least-recently-used class tables ``[K+1,P]`` keyed by vocabulary and encoder, each
    stored with the weights version it was computed with (a stale entry is recomputed).

    Args:
        limit: vocabularies kept.
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._entries: OrderedDict[tuple, tuple[WeightsVersion, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0  # tables computed (for tests and benchmarks)

    def get(
        self, key: tuple, version: WeightsVersion | None, make: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """The table of ``key`` at weights ``version``, computed by ``make()`` when missing or
        stale (``version`` None: always computed, never stored)."""
        with self._lock:
            hit = self._entries.get(key)
            if version is not None and hit is not None and hit[0] == version:
                self._entries.move_to_end(key)
                return hit[1]
        table = make()
        self.misses += 1
        if version is not None:
            with self._lock:
                self._entries[key] = (version, table)
                self._entries.move_to_end(key)
                while len(self._entries) > self.limit:
                    self._entries.popitem(last=False)
        return table

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # a model holding a cache stays deep-copyable and picklable (the copy starts empty)
    def __deepcopy__(self, memo) -> ClassTableCache:
        return ClassTableCache(self.limit)

    def __getstate__(self) -> dict:
        return {"limit": self.limit}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["limit"])


# ---- several separately encoded images in one forward ----------------------------------------
def _pad_to(x: torch.Tensor, size: tuple[int, int], value=0) -> torch.Tensor:
    """Pad the last two dims of ``x`` (right / bottom) to ``size``."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    return F.pad(x, (0, size[1] - w, 0, size[0] - h), value=value)


def _pad_cells(x: torch.Tensor, hw: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``[..., h*w, C]`` cells of an ``hw`` grid -> ``[..., H*W, C]`` of the ``size`` grid."""
    lead, c = x.shape[:-2], x.shape[-1]
    grid = x.reshape(*lead, hw[0], hw[1], c).movedim(-1, -3)  # ...xhxwxC -> ...xCxhxw
    return _pad_to(grid, size).movedim(-3, -1).reshape(*lead, size[0] * size[1], c)


def _cat_padded(parts: Iterable[torch.Tensor], value=0) -> torch.Tensor:
    parts = list(parts)
    h = max(p.shape[-2] for p in parts)
    w = max(p.shape[-1] for p in parts)
    return torch.cat([_pad_to(p, (h, w), value) for p in parts])


def stack_features(features: list[ImageFeatures]) -> ImageFeatures:
    """Separately encoded images -> one batch on a common canvas (zero padding, invalid)."""
    if not features:
        raise ValueError("features: no images to stack")
    if len(features) == 1:
        return features[0]
    batch = ImageBatch(
        _cat_padded(f.batch.pixels for f in features),
        [s for f in features for s in f.batch.sizes],
        [s for f in features for s in f.batch.original_sizes],
    )
    px = [f.pixel for f in features]
    levels = [_cat_padded(p.levels[i] for p in px) for i in range(len(px[0].levels))]
    pixel = PixelFeatures(
        levels=levels,
        valid=[_cat_padded((p.valid[i] for p in px), False) for i in range(len(levels))],
        mask_features=_cat_padded(p.mask_features for p in px),
        mask_valid=_cat_padded((p.mask_valid for p in px), False),
        mask_stride=px[0].mask_stride,
    )
    maps = [_cat_padded(f.spatial_maps[i] for f in features) for i in range(len(levels))]
    return ImageFeatures(batch, pixel, maps)


def stack_caches(
    caches: list[InterfaceImageCache | None], features: list[ImageFeatures]
) -> InterfaceImageCache | None:
    """The interface caches of ``features`` (one each) on the canvas of
    :func:`stack_features`; None unless every image has one of the same weights version."""
    if any(c is None for c in caches) or len({c.version for c in caches}) != 1:
        return None
    if len(caches) == 1:
        return caches[0]
    n = len(features[0].pixel.levels)
    sizes = [
        (
            max(f.pixel.levels[i].shape[-2] for f in features),
            max(f.pixel.levels[i].shape[-1] for f in features),
        )
        for i in range(n)
    ]

    def cells(get, level):
        return torch.cat(
            [
                _pad_cells(get(c), tuple(f.pixel.levels[level].shape[-2:]), sizes[level])
                for c, f in zip(caches, features)
            ]
        )

    levels = [
        (cells(lambda c, i=i: c.levels[i][0], i), cells(lambda c, i=i: c.levels[i][1], i))
        for i in range(n)
    ]
    kv = [
        (cells(lambda c, j=j: c.kv[j][0], j % n), cells(lambda c, j=j: c.kv[j][1], j % n))
        for j in range(len(caches[0].kv))
    ]
    full = _cat_padded(c.mask_features.full for c in caches)
    mask_levels = [_cat_padded(c.mask_features.levels[i] for c in caches) for i in range(n)]
    return InterfaceImageCache(levels, MaskFeatures(full, mask_levels), kv, caches[0].version)
