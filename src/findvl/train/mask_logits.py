"""Mask logits of many matching problems, dense or as FIND's factors.

FIND's mask logits are a per-pixel product, ``masks[i,q] = embed[i,q] · features[image[i]]``
(:mod:`findvl.model.heads`). Training reads them only at points (the matching's uniform points)
and on the masks that were matched (the loss's importance sampling), so the criterion never
needs the ``[L,B,Q,H,W]`` logits of every proposal: bilinear sampling is linear, so the
features sampled at a point and then multiplied equal the dense logits sampled there, and the
matched rows are one small product each. :class:`MaskLogits` gives both reads from either form,
with the same numbers up to float summation order.
"""

from __future__ import annotations

import torch

from findvl.train.point_sampling import point_sample


class MaskLogits:
    """``[n,Q,H,W]`` mask logits of ``n`` problems (e.g. layers × images) of ``Q`` proposals.

    Either ``dense`` (the logits themselves) or ``embed [n,Q,M]``, ``features [B,M,H,W]`` and
    ``image [n]`` (the row of ``features`` of each problem).
    """

    def __init__(
        self,
        dense: torch.Tensor | None = None,
        *,
        embed: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> None:
        if (dense is None) == (embed is None):
            raise ValueError("MaskLogits: give either dense logits or embed and features")
        if dense is not None and dense.dim() != 4:
            raise ValueError(f"dense mask logits must be [n,Q,H,W], got {tuple(dense.shape)}")
        if embed is not None:
            if features is None or image is None:
                raise ValueError("MaskLogits: embed needs features and image")
            if embed.dim() != 3 or features.dim() != 4 or embed.shape[-1] != features.shape[1]:
                raise ValueError(
                    f"embed [n,Q,M] and features [B,M,H,W] must share M, got "
                    f"{tuple(embed.shape)} and {tuple(features.shape)}"
                )
            if image.shape != embed.shape[:1]:
                raise ValueError(f"image must be [{embed.shape[0]}], got {tuple(image.shape)}")
        self.dense, self.embed, self.features, self.image = dense, embed, features, image

    @classmethod
    def layered(cls, embed: torch.Tensor, features: torch.Tensor) -> MaskLogits:
        """Factors of ``L`` layers: ``embed [L,B,Q,M]``, problem ``layer * B + image``."""
        layers, batch = embed.shape[:2]
        image = torch.arange(batch, device=embed.device).repeat(layers)
        return cls(embed=embed.flatten(0, 1), features=features, image=image)

    @property
    def num_problems(self) -> int:
        return (self.dense if self.dense is not None else self.embed).shape[0]

    @property
    def num_queries(self) -> int:
        return (self.dense if self.dense is not None else self.embed).shape[1]

    @property
    def device(self) -> torch.device:
        return (self.dense if self.dense is not None else self.embed).device

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the logits."""
        source = self.dense if self.dense is not None else self.features
        return tuple(source.shape[-2:])

    def head(self, n: int) -> MaskLogits:
        """The first ``n`` problems."""
        if self.dense is not None:
            return MaskLogits(self.dense[:n])
        return MaskLogits(embed=self.embed[:n], features=self.features, image=self.image[:n])

    def zero(self) -> torch.Tensor:
        """A zero scalar connected to the logits (a loss with nothing to compare)."""
        return (self.dense if self.dense is not None else self.embed).sum() * 0.0

    def at_points(self, problems: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """``[a,Q,P]`` float logits of every proposal of ``problems [a]`` at ``coords [a,P,2]``
        (:func:`~findvl.train.point_sampling.point_sample` of the dense logits)."""
        if self.dense is not None:
            return point_sample(self.dense[problems].float(), coords)
        sampled = sample_by_image(self.features.float(), self.image[problems], coords)  # axMxP
        return self.embed[problems].float() @ sampled

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """``[m,H,W]`` dense logits of the masks ``index [m]`` (flat ``problem * Q + query``),
        differentiable."""
        if self.dense is not None:
            return self.dense.flatten(0, 1)[index]
        q = self.num_queries
        embed = self.embed.flatten(0, 1)[index]  # mxM
        image = self.image[torch.div(index, q, rounding_mode="floor")]
        batch, channels = self.features.shape[:2]
        rank, width = _ranks(image, batch)
        padded = embed.new_zeros(batch, width, channels)
        padded[image, rank] = embed  # the rows of each image, padded: one product for all
        out = padded @ self.features.flatten(2)  # BxwidthxM @ BxMxHW
        return out[image, rank].reshape(len(index), *self.size)

    @torch.no_grad()
    def detached_dense(self) -> torch.Tensor:
        """``[n,Q,H,W]`` logits without gradient."""
        if self.dense is not None:
            return self.dense.detach()
        n, q = self.num_problems, self.num_queries
        return self.rows(torch.arange(n * q, device=self.device)).reshape(n, q, *self.size)


def sample_by_image(
    features: torch.Tensor, image: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """``features [B,C,H,W]`` sampled at ``coords [n,P,2]`` on image ``image [n]`` -> ``[n,C,P]``.

    The points of all entries are sampled in one call (each image's entries padded to the
    most of one image), so no image's features are copied.
    """
    n, p = coords.shape[:2]
    batch, channels = features.shape[:2]
    if n == 0:
        return features.new_zeros(0, channels, p)
    rank, width = _ranks(image, batch)
    grid = coords.new_full((batch, width, p, 2), 0.5)
    grid[image, rank] = coords
    out = point_sample(features, grid.reshape(batch, width * p, 2))  # BxCx(width*P)
    return out.reshape(batch, channels, width, p).permute(0, 2, 1, 3)[image, rank]


def _ranks(image: torch.Tensor, batch: int) -> tuple[torch.Tensor, int]:
    """``(rank [n], width)``: each entry's position among the entries of its image (in
    order) and the most entries of one image."""
    n = len(image)
    counts = torch.bincount(image, minlength=batch)
    order = torch.argsort(image, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(image)
    rank[order] = torch.arange(n, device=image.device) - starts[image[order]]
    return rank, int(counts.max()) if n else 0
