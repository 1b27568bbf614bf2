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
)
from findvl.model.heads import FindHeads
from findvl.model.masks import MaskBuilder
from findvl.model.requests import VisualPrompt
from findvl.model.sampler import level_points, sample_tokens
from findvl.model.sequence_types import (
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
        generator: torch.Generator | None,
        field: str,
    ) -> SlotInput:
        """Spatial tokens of each row's prompts, per level; ids = prompt index in the row.

        Points are drawn from each prompt (:func:`findvl.model.sampler.level_points`), the
        level's map of ``source`` is sampled there and the positive/negative indicator added.
        """
        per = level_points(
            prompts,
            num_levels=len(source.maps),
            per_level=sampling.per_level,
            image_sizes=source.image_sizes,
            input_sizes=source.input_sizes,
            canvas=source.canvas,
            max_points=sampling.max_points,
            generator=generator,
            field=field,
            convention=sampling.convention,
        )
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

    # ---- forward --------------------------------------------------------------------------
    def forward(
        self,
        slots: list[SlotInput],
        *,
        pset: PrototypeSet,
        pixel: PixelFeatures | None,
        previous_mask: torch.Tensor | None = None,
        all_layer_masks: bool = False,
    ) -> InterfaceOutput:
        """Run the interface.

        Args:
            slots: the sequence (order is kept).
            pset: compiled prototypes that give the group-level masks.
            pixel: pixel-decoder output; None when no slot attends ``f.image``.
            previous_mask: ``[B,H/4,W/4]`` logits of the previous round for the spatial memory.
            all_layer_masks: compute full-resolution masks at every layer (deep supervision);
                otherwise only for the final layer.
        """
        levels = self.image_levels(pixel) if pixel is not None else None
        masks = MaskBuilder(slots, pset, pixel, previous_mask)
        mask_features = self.heads.prepare(pixel)
        outputs = [s for s in slots if s.kind in ("proposal", "query")]
        states = {s.key: s.x for s in slots}
        positions = {s.key: s.pos for s in slots}
        preds = self.heads(self._gather(outputs, states), outputs, mask_features, level=0)
        layers = [preds]
        for i in range(self.num_layers):
            lvl = i % self.num_levels
            for s in slots:
                if s.levels is not None:
                    states[s.key] = s.levels[lvl]
                    positions[s.key] = s.levels[lvl].detach()
            states = self._content(i, lvl, slots, states, positions, masks, levels, preds)
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
                full_masks=last or all_layer_masks,
            )
            layers.append(preds)
        return InterfaceOutput(layers)

    @staticmethod
    def _gather(outputs: list[SlotInput], states: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [states[s.key] for s in outputs]

    def _content(self, i, lvl, slots, states, positions, masks, levels, preds):
        rows = [s for s in slots if s.key in masks.content_rows]
        if not rows:
            return states
        x = torch.cat([states[s.key] for s in rows], 1)
        query_pos = torch.cat([positions[s.key] for s in rows], 1)
        keys, key_pos = [], []
        if masks.uses_image:
            keys.append(levels[lvl][0])
            key_pos.append(levels[lvl][1])
        for s in masks.token_columns:
            keys.append(states[s.key])
            key_pos.append(positions[s.key])
        memory, pos = torch.cat(keys, 1), torch.cat(key_pos, 1)
        allowed = masks.content(lvl, preds)
        if self.block_sparse:
            plan = masks.content_plan(lvl)
            allowed = plan.blocks_of(allowed)
            out = self.content_attention[i](x, memory, allowed, pos, query_pos, plan)
        else:
            out = self.content_attention[i](x, memory, allowed, pos, query_pos)
        new = dict(states)
        for s, part in zip(rows, out.split([s.x.shape[1] for s in rows], 1)):
            new[s.key] = part
        return new
