"""The FIND interface: content attention -> conditional attention -> FFN, ×L layers.

The interface sees a sequence of *slots* (embedding groups of the compiled prototypes) and
builds its masks from the :class:`~findvl.prototypes.PrototypeSet` and from each slot's padding
and ids. Layer ``i`` attends image level ``i % 3`` (strides 32, 16, 8) with Mask2Former masks
from the previous layer's predictions. Parameter names follow the released FIND decoder.

The interface also owns its embedding sampling: the learned initial embeddings (proposals,
queries, memories) and the spatial tokens drawn from its own image maps
(:meth:`FindInterface.spatial_tokens`), so no caller reaches into its weights.
"""

from __future__ import annotations

import torch
from torch import nn

from findvl.encoders.pixel_decoder import PixelFeatures
from findvl.layers import (
    CrossAttentionLayer,
    FFNLayer,
    PositionEmbeddingSine,
    SelfAttentionLayer,
    take_positions,
)
from findvl.model.heads import FindHeads
from findvl.model.image_cache import caching_allowed, weights_version
from findvl.model.masks import MaskBuilder
from findvl.model.requests import VisualPrompt
from findvl.model.sampler import PromptPoints, level_points, sample_tokens
from findvl.model.sequence_types import (
    InterfaceImageCache,
    InterfaceOutput,
    PointSampling,
    SlotInput,
    SpatialSource,
)
from findvl.prototypes import PrototypeSet


class FindInterface(nn.Module):
    """The interface transformer.

    Args:
        hidden_dim: width D.
        num_layers: interface layers L.
        num_heads: attention heads.
        ffn_dim: FFN width.
        num_proposals: proposals per proposal group (the image query is one more row).
        num_levels: image levels attended (3).
        spatial_memories: learned spatial memory vectors.
        heads: the prediction heads.
    """

    def __init__(
        self,
        *,
        hidden_dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        num_proposals: int,
        num_levels: int,
        spatial_memories: int,
        heads: FindHeads,
    ) -> None:
        super().__init__()
        d = hidden_dim
        self.num_layers, self.num_heads, self.num_levels = num_layers, num_heads, num_levels
        self.num_proposals = num_proposals
        self.query_feat = nn.Embedding(num_proposals + 1, d)
        self.query_embed = nn.Embedding(num_proposals + 1, d)
        self.pn_indicator = nn.Embedding(2, d)
        self.level_embed = nn.Embedding(num_levels, d)
        self.mask_spatial_embed = nn.ParameterList(
            nn.Parameter(torch.randn(d, d) * 0.02) for _ in range(num_levels)
        )
        self.spatial_embed = nn.Embedding(spatial_memories, d)
        self.spatial_featured = nn.Embedding(spatial_memories, d)
        self.content_attention = nn.ModuleList(
            CrossAttentionLayer(d, num_heads) for _ in range(num_layers)
        )
        self.condition_attention = nn.ModuleList(
            SelfAttentionLayer(d, num_heads) for _ in range(num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(d, ffn_dim) for _ in range(num_layers))
        self.heads = heads
        self.pe_layer = PositionEmbeddingSine(d // 2)
        # attention block by block (exact; see findvl.model.blocks); False: one dense mask
        self.block_sparse = True

    # ---- initial embeddings -------------------------------------------------------------
    @property
    def hidden_dim(self) -> int:
        """Width D of every slot."""
        return self.query_feat.weight.shape[1]

    def proposals(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Content and position of one proposal group, ``[B,num_proposals,D]`` each."""
        n = self.num_proposals
        return (
            self.query_feat.weight[:n].expand(batch, -1, -1),
            self.query_embed.weight[:n].expand(batch, -1, -1),
        )

    def queries(self, batch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` copies of the image query, ``[B,n,D]`` each."""
        return (
            self.query_feat.weight[-1:].expand(batch, n, -1),
            self.query_embed.weight[-1:].expand(batch, n, -1),
        )

    def memories(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.spatial_featured.weight.expand(batch, -1, -1),
            self.spatial_embed.weight.expand(batch, -1, -1),
        )

    def spatial_tokens(
        self,
        key: str,
        source: SpatialSource,
        prompts: list[list[VisualPrompt]],
        *,
        sampling: PointSampling,
        generator: torch.Generator | list[torch.Generator] | None,
        field: str,
    ) -> SlotInput:
        """Spatial tokens of each row's prompts, per level; ids = prompt index in the row.

        Points are drawn from each prompt (:func:`findvl.model.sampler.level_points`), the
        level's map of ``source`` is sampled there and the positive/negative indicator added.
        ``generator``: one random stream for all rows, or one per row (then each row draws
        exactly the points it draws alone).
        """

        def draw(rows, sizes, inputs, gen):
            return level_points(
                rows,
                num_levels=len(source.maps),
                per_level=sampling.per_level,
                image_sizes=sizes,
                input_sizes=inputs,
                canvas=source.canvas,
                max_points=sampling.max_points,
                generator=gen,
                field=field,
                convention=sampling.convention,
            )

        if isinstance(generator, list):
            if len(generator) != len(prompts):
                raise ValueError(f"{field}: {len(generator)} generators for {len(prompts)} rows")
            rows = [
                draw([p], [source.image_sizes[b]], [source.input_sizes[b]], generator[b])
                for b, p in enumerate(prompts)
            ]
            per = [_stack_points([r[lvl] for r in rows]) for lvl in range(len(source.maps))]
        else:
            per = draw(prompts, source.image_sizes, source.input_sizes, generator)
        device = source.maps[0].device
        levels = []
        for m, pts in zip(source.maps, per):
            indicator = self.pn_indicator.weight[pts.negative.to(device).long()]  # BxPxD
            levels.append(sample_tokens(m, pts.coords.to(device), sampling.convention) + indicator)
        valid, ids = per[0].valid.to(device), per[0].ids.to(device)
        return SlotInput(key, "token", levels[0], levels[0].detach(), valid, ids, levels=levels)

    def mark_visual_tokens(
        self, features: torch.Tensor, is_visual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Content and position of text tokens ``features [B,L,D]`` where the tokens at
        ``is_visual [B,L]`` (placeholders of visual entities) also carry the image query's
        content and position, so they are read as "a region goes here"."""
        marker = is_visual[..., None].to(features.dtype)
        x = features + marker * self.query_feat.weight[-1]
        pos = features.detach() + marker * self.query_embed.weight[-1]
        return x, pos

    def image_levels(self, pixel: PixelFeatures) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level ``(src [B,hw,D] with level embedding, pos [B,hw,D])``."""
        out = []
        for i, (feat, valid) in enumerate(zip(pixel.levels, pixel.valid)):
            src = feat.flatten(2).transpose(1, 2) + self.level_embed.weight[i]  # BxDxhxw -> BxhwxD
            pos = self.pe_layer(valid).flatten(2).transpose(1, 2)
            out.append((src, pos))
        return out

    def spatial_token_levels(
        self, levels: list[tuple[torch.Tensor, torch.Tensor]], pixel: PixelFeatures
    ) -> list[torch.Tensor]:
        """Per level ``[B,D,h,w]`` maps that spatial tokens are sampled from."""
        out = []
        for i, ((src, _), feat) in enumerate(zip(levels, pixel.levels)):
            b, _, h, w = feat.shape
            mapped = src @ self.mask_spatial_embed[i]
            out.append(mapped.transpose(1, 2).reshape(b, -1, h, w))
        return out

    def image_cache(self, pixel: PixelFeatures) -> InterfaceImageCache:
        """The prompt-independent image side of every layer (levels, mask features and each
        layer's content key/value projections of its image level), for :meth:`forward`."""
        levels = self.image_levels(pixel)
        keyed = [src + pos for src, pos in levels]  # once per level, not per layer
        kv = []
        for i, layer in enumerate(self.content_attention):
            lvl = i % self.num_levels
            kv.append(layer.multihead_attn.project_kv(keyed[lvl], levels[lvl][0]))
        return InterfaceImageCache(levels, self.heads.prepare(pixel), kv, weights_version(self))

    def usable_cache(self, cache: InterfaceImageCache | None) -> InterfaceImageCache | None:
        """``cache`` if it may be used now: inference (no grad, eval mode) with the weights it
        was computed with; None otherwise (the image side is then recomputed)."""
        if cache is None or cache.version is None or not caching_allowed(self):
            return None
        return cache if cache.version == weights_version(self) else None

    # ---- forward --------------------------------------------------------------------------
    def forward(
        self,
        slots: list[SlotInput],
        *,
        pset: PrototypeSet,
        pixel: PixelFeatures | None,
        previous_mask: torch.Tensor | None = None,
        all_layer_masks: bool = False,
        dense_masks: bool = True,
        image_cache: InterfaceImageCache | None = None,
    ) -> InterfaceOutput:
        """Run the interface.

        Args:
            slots: the sequence (order is kept).
            pset: compiled prototypes that give the group-level masks.
            pixel: pixel-decoder output; None when no slot attends ``f.image``.
            previous_mask: ``[B,H/4,W/4]`` logits of the previous round for the spatial memory.
            all_layer_masks: compute full-resolution masks at every layer (deep supervision);
                otherwise only for the final layer.
            dense_masks: False: no full-resolution masks at any layer (the heads' mask
                embeddings times the mask features are the masks).
            image_cache: :meth:`image_cache` of ``pixel``; used when :meth:`usable_cache`
                allows (same outputs, without the image-side work).
        """
        cache = self.usable_cache(image_cache) if pixel is not None else None
        if cache is not None and cache.mask_features.full.shape != pixel.mask_features.shape:
            raise ValueError(
                f"image_cache: computed for images of mask features "
                f"{tuple(cache.mask_features.full.shape)}, "
                f"given {tuple(pixel.mask_features.shape)}"
            )
        if cache is not None:
            levels, mask_features = cache.levels, cache.mask_features
        else:
            levels = self.image_levels(pixel) if pixel is not None else None
            mask_features = self.heads.prepare(pixel)
        masks = MaskBuilder(slots, pset, pixel, previous_mask)
        outputs = [s for s in slots if s.kind in ("proposal", "query")]
        states = {s.key: s.x for s in slots}
        positions = {s.key: s.pos for s in slots}
        preds = self.heads(
            self._gather(outputs, states),
            outputs,
            mask_features,
            level=0,
            full_masks=dense_masks and (all_layer_masks or self.num_layers == 0),
        )
        layers = [preds]
        for i in range(self.num_layers):
            lvl = i % self.num_levels
            for s in slots:
                if s.levels is not None:
                    states[s.key] = s.levels[lvl]
                    positions[s.key] = s.levels[lvl].detach()
            kv = cache.kv[i] if cache is not None else None
            states = self._content(i, lvl, slots, states, positions, masks, levels, preds, kv)
            x = torch.cat([states[s.key] for s in slots], 1)
            pos = torch.cat([positions[s.key] for s in slots], 1)
            if self.block_sparse:
                plan = masks.condition_plan
                x = self.condition_attention[i](x, masks.condition_blocks, pos, plan)
            else:
                x = self.condition_attention[i](x, masks.condition, pos)
            x = self.transformer_ffn_layers[i](x)
            states = dict(zip([s.key for s in slots], x.split([s.x.shape[1] for s in slots], 1)))
            last = i == self.num_layers - 1
            preds = self.heads(
                self._gather(outputs, states),
                outputs,
                mask_features,
                level=(i + 1) % self.num_levels,
                full_masks=dense_masks and (last or all_layer_masks),
            )
            layers.append(preds)
        return InterfaceOutput(layers, mask_features.full if mask_features is not None else None)

    @staticmethod
    def _gather(outputs: list[SlotInput], states: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [states[s.key] for s in outputs]

    def _content(self, i, lvl, slots, states, positions, masks, levels, preds, image_kv=None):
        """Content attention of layer ``i``; ``image_kv``: the layer's cached projections of
        the image keys (then only the token keys are projected here)."""
        rows = [s for s in slots if s.key in masks.content_rows]
        if not rows:
            return states
        x = torch.cat([states[s.key] for s in rows], 1)
        query_pos = torch.cat([positions[s.key] for s in rows], 1)
        keys, key_pos = [], []
        prefix = image_kv if masks.uses_image else None
        if masks.uses_image and prefix is None:
            keys.append(levels[lvl][0])
            key_pos.append(levels[lvl][1])
        for s in masks.token_columns:
            keys.append(states[s.key])
            key_pos.append(positions[s.key])
        if keys:
            memory, pos = torch.cat(keys, 1), torch.cat(key_pos, 1)
        else:  # only cached image keys
            memory = pos = x.new_zeros(x.shape[0], 0, x.shape[2])
        allowed = masks.content(lvl, preds)
        layer = self.content_attention[i]
        if self.block_sparse:
            plan = masks.content_plan(lvl)
            allowed = [  # plan.blocks_of(allowed), as views where a block is one run
                take_positions([take_positions([allowed], r, 1)], k, 2)
                for r, k in zip(plan.row_index, plan.key_index)
            ]
            out = layer(x, memory, allowed, pos, query_pos, plan, prefix=prefix)
        else:
            out = layer(x, memory, allowed, pos, query_pos, prefix=prefix)
        new = dict(states)
        for s, part in zip(rows, out.split([s.x.shape[1] for s in rows], 1)):
            new[s.key] = part
        return new


def _stack_points(rows: list[PromptPoints]) -> PromptPoints:
    """One-row :class:`PromptPoints` -> one batch, padded as :func:`prompt_points` pads."""
    n = max(r.coords.shape[1] for r in rows)

    def pad(x, value):
        return torch.nn.functional.pad(
            x, (0, 0, 0, n - x.shape[1]) if x.dim() == 3 else (0, n - x.shape[1]), value=value
        )

    return PromptPoints(
        torch.cat([pad(r.coords, 0.0) for r in rows]),
        torch.cat([pad(r.valid, False) for r in rows]),
        torch.cat([pad(r.ids, -1) for r in rows]),
        torch.cat([pad(r.negative, False) for r in rows]),
    )
