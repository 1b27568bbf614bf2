"""Attention masks of one interface forward, from the compiled prototypes and each slot's
padding and ids. Boolean, ``True`` = may attend."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from findvl.encoders.pixel_decoder import PixelFeatures
from findvl.model.blocks import BlockPlan, plan_blocks
from findvl.model.sequence_types import SlotInput, SlotPrediction
from findvl.prototypes import IMAGE_FEATURES, PrototypeSet


def _block(row: SlotInput, col: SlotInput, id_matched: bool) -> torch.Tensor:
    """``[B,n_row,n_col]`` allowed entries between two slots (padding and ids)."""
    allowed = row.valid[:, :, None] & col.valid[:, None, :]
    if id_matched:
        if row.ids is None or col.ids is None:
            raise ValueError(f"slots {row.key} and {col.key} attend by id but carry no ids")
        allowed = allowed & (row.ids[:, :, None] == col.ids[:, None, :]) & (col.ids >= 0)[:, None]
    return allowed


class MaskBuilder:
    """Content and conditional masks for a sequence of slots.

    Attributes:
        content_rows: keys of slots that take part in content attention.
        uses_image: whether some row attends ``f.image``.
        token_columns: slots attended as keys in content attention (after the image keys).
        condition: ``[B,N,N]`` conditional-attention mask over all slots.
        condition_plan: its blocks (:mod:`findvl.model.blocks`); ``condition_blocks`` the
            per-block parts of ``condition``.
    """

    def __init__(
        self,
        slots: list[SlotInput],
        pset: PrototypeSet,
        pixel: PixelFeatures | None,
        previous_mask: torch.Tensor | None,
    ) -> None:
        keys = {s.key for s in slots}
        pairs = [
            (y, x)
            for y, x in pset.content_pairs
            if y in keys and (x in keys or x == IMAGE_FEATURES)
        ]
        image_rows = {y for y, x in pairs if x == IMAGE_FEATURES}
        if image_rows and pixel is None:
            raise ValueError(f"slots {sorted(image_rows)} attend f.image but no image was given")
        self.slots, self.pset, self.pixel, self.previous = slots, pset, pixel, previous_mask
        self.content_rows = {y for y, _ in pairs}
        self.rows = [s for s in slots if s.key in self.content_rows]
        self.image_rows = image_rows
        self.uses_image = bool(image_rows)
        token_keys = {x for _, x in pairs if x != IMAGE_FEATURES}
        self.token_columns = [s for s in slots if s.key in token_keys]
        self._pairs = set(pairs)
        self._token_part = self._tokens() if self.rows else None
        self.condition = self._condition()
        sizes = [(s.key, s.x.shape[1]) for s in slots]
        present = {(y, x) for y, x in pset.condition_pairs if y in keys and x in keys}
        device = self.condition.device
        self.condition_plan = plan_blocks(sizes, sizes, present, device=device)
        self.condition_blocks = self.condition_plan.blocks_of(self.condition)
        self._content_plans: dict[int, BlockPlan] = {}

    def content_plan(self, level: int) -> BlockPlan:
        """Blocks of the content attention at ``level`` (keys: image cells, then tokens)."""
        if level not in self._content_plans:
            keys = [(s.key, s.x.shape[1]) for s in self.token_columns]
            if self.uses_image:
                keys = [(IMAGE_FEATURES, self.pixel.valid[level][0].numel()), *keys]
            rows = [(s.key, s.x.shape[1]) for s in self.rows]
            self._content_plans[level] = plan_blocks(
                rows, keys, self._pairs, device=self.condition.device
            )
        return self._content_plans[level]

    def _tokens(self) -> torch.Tensor:
        row_blocks = []
        for r in self.rows:
            cols = []
            for c in self.token_columns:
                if (r.key, c.key) in self._pairs:
                    cols.append(_block(r, c, self.pset.id_matched(r.key, c.key)))
                else:
                    cols.append(r.valid.new_zeros(r.valid.shape[0], r.x.shape[1], c.x.shape[1]))
            b = r.valid.shape[0]
            row_blocks.append(torch.cat(cols, 2) if cols else r.valid.new_zeros(b, r.x.shape[1], 0))
        return torch.cat(row_blocks, 1)

    def _condition(self) -> torch.Tensor:
        pairs = self.pset.condition_pairs
        rows = []
        for r in self.slots:
            cols = []
            for c in self.slots:
                if (r.key, c.key) in pairs:
                    cols.append(_block(r, c, self.pset.condition_id_matched(r.key, c.key)))
                else:
                    cols.append(r.valid.new_zeros(r.valid.shape[0], r.x.shape[1], c.x.shape[1]))
            rows.append(torch.cat(cols, 2))
        return torch.cat(rows, 1)

    def image_part(self, level: int, preds: dict[str, SlotPrediction]) -> torch.Tensor:
        """``[B,N_rows,h*w]``: Mask2Former masks from the previous predictions."""
        valid = self.pixel.valid[level].flatten(1)  # Bxhxw -> Bxhw
        size = tuple(self.pixel.valid[level].shape[-2:])
        parts = []
        for r in self.rows:
            b, n = r.valid.shape
            if r.key not in self.image_rows:
                parts.append(valid.new_zeros(b, n, valid.shape[1]))
                continue
            if r.kind == "proposal":
                allowed = preds[r.key].attn.flatten(2) >= 0  # sigmoid >= 0.5
            elif r.kind == "memory" and self.previous is not None:
                prev = F.interpolate(self.previous[:, None].float(), size=size, mode="bilinear")
                allowed = (prev.flatten(2) >= 0).expand(b, n, -1)
            else:  # queries (the image query) attend the whole image
                allowed = valid[:, None].expand(b, n, -1)
            allowed = allowed & valid[:, None]
            empty = ~allowed.any(-1, keepdim=True)
            parts.append(allowed | (empty & valid[:, None]))
        return torch.cat(parts, 1)

    def content(self, level: int, preds: dict[str, SlotPrediction]) -> torch.Tensor:
        """``[B,N_rows,K]`` with K = image keys of ``level`` (if used) + token keys."""
        if not self.uses_image:
            return self._token_part
        return torch.cat([self.image_part(level, preds), self._token_part], 2)
