"""ONNX graphs of one task: image encoder, pixel decoder, interface and heads.

What stays outside the graph is what is not a tensor program: tokenising texts and drawing
points from a prompt. Each graph takes tensors a caller computes with the PyTorch model or by
hand. By default its shapes are dynamic: one graph takes any canvas whose height and width are
multiples of :func:`size_multiple` (the padding multiple of the vision encoder and its coarsest
stride; ``H``, ``W`` below), any number of classes, phrases and phrase tokens, and any number
of points of its one prompt; ``dynamic=False`` fixes every shape to the traced example:

* ``generic``: ``pixels [1,3,H,W]`` (normalised, padded as :func:`preprocess_images` pads)
  and ``class_table [K+1,P]`` (:meth:`FindModel.class_embeddings`) -> ``masks [1,N,H/s,W/s]``
  mask logits of the object proposals and ``class_logits [1,N,K+1]``.
* ``grounding``: ``pixels`` and ``text [T,L,D]`` / ``text_mask [T,L]`` (the phrases' projected
  tokens, :meth:`FindModel.encode_text`) -> ``masks [1,N,H/s,W/s]`` and ``logits [1,T,N]``
  (score of proposal n for phrase t).
* ``interactive``: ``pixels``, ``points [1,P,2]`` (normalised ``(x, y)`` on the canvas, one
  prompt) and ``negative [1,P]`` -> ``masks`` and ``logits [1,1,N]``. The logits are the
  learned score; a model whose conventions add the click agreement at inference
  (``click_agreement``) adds it to them outside the graph, from ``masks`` and the prompt's
  pixels (:func:`findvl.model.agreement.click_agreement`).

Inside the graph every slot is built as the model builds it (text tokens keep their padding,
marked invalid, which the interface ignores), so onnxruntime gives the PyTorch outputs.

What stays fixed, and why: the batch (one image; several images are several runs), the one
prompt of an interactive graph, and the shapes of the weights. The graph is traced by
``torch.export`` (``dynamo=True``); the interface's block plan is computed from the task's
prototype, not from sizes, so it traces symbolically. One step did not: pooling the
valid-region masks of the pixel decoder with ``adaptive_max_pool2d``, whose output size the
exporter can only take as a constant (it guarded the canvas, ``Eq((H - 1)//32 + 1, 2)`` at 64²,
and the ONNX graph then computed masks off by 0.16 at 96×128 without any error; the legacy
exporter, ``dynamo=False`` with ``dynamic_axes``, stops there: "ONNX export of operator adaptive
pooling, since output_size is not constant"). On canvases that every level's stride divides
:func:`findvl.encoders.pixel_decoder.downsample_valid` now pools as a reshape and a max over
each cell, the same result, which traces symbolically. ``torch.export`` is kept: its program
lists the guards it assumed, which is how the pooling was found.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from findvl.encoders.preprocess import ImageBatch
from findvl.model import assemble
from findvl.model.find import FindModel
from findvl.model.requests import GroundedSegmentation, InteractiveSegmentation
from findvl.model.sampler import sample_tokens
from findvl.model.sequence_types import SlotInput
from findvl.model.slots import proposal_slot, query_slot
from findvl.model.tasks import TASK_TABLE, TaskSlots
from findvl.prototypes import OBJECT_PROPOSALS, prototype_set

EXPORT_TASKS = ("generic", "grounding", "interactive")
#: The largest canvas side a dynamic graph accepts.
MAX_SIDE = 4096


def size_multiple(model: FindModel) -> int:
    """What canvas sides must be multiples of: the vision encoder's padding multiple and its
    coarsest stride (every level's size then divides the canvas)."""
    stride = max(level.stride for level in model.vision.levels)
    return math.lcm(model.vision.norm.pad_multiple, stride)


class _ImageGraph(nn.Module):
    """Shared part: pixels -> pixel features and spatial maps."""

    def __init__(self, model: FindModel) -> None:
        super().__init__()
        self.model = model

    def encode(self, pixels: torch.Tensor):
        h, w = pixels.shape[-2:]
        batch = ImageBatch(pixels, [(h, w)], [(h, w)])
        m = self.model
        pixel = m.pixel_decoder(m.vision.forward_features(pixels), batch.valid_mask, pixels)
        return batch, pixel

    def run(self, name: str, slots: list[SlotInput], pixel):
        pset = prototype_set([name], self.model.variant)
        return self.model.interface(slots, pset=pset, pixel=pixel)


class GenericGraph(_ImageGraph):
    """``pixels [1,3,H,W]``, ``class_table [K+1,P]`` -> ``masks``, ``class_logits``."""

    def forward(self, pixels: torch.Tensor, class_table: torch.Tensor):
        _, pixel = self.encode(pixels)
        slots = [proposal_slot(self.model.interface, OBJECT_PROPOSALS, 1)]
        out = self.run("generic_segmentation", slots, pixel)
        final = assemble.generic(out, class_table, self.model.class_scale(), []).final
        return final.masks, final.logits


class GroundingGraph(_ImageGraph):
    """``pixels``, ``text [T,L,D]``, ``text_mask [T,L]`` -> ``masks``, ``logits [1,T,N]``."""

    def forward(self, pixels: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor):
        _, pixel = self.encode(pixels)
        spec = TASK_TABLE[GroundedSegmentation]
        t, length, d = text.shape
        ids = torch.arange(t, device=text.device)[:, None].expand(t, length)
        valid = text_mask.reshape(1, t * length)
        tokens = text.reshape(1, t * length, d)
        interface = self.model.interface
        slots = [
            proposal_slot(interface, f"{spec.name}/p.grounding", 1),
            query_slot(interface, f"{spec.name}/q.description", [t]),
            SlotInput(
                f"{spec.name}/t.description",
                "token",
                tokens,
                tokens,
                valid,
                torch.where(valid, ids.reshape(1, -1), -1),
            ),
        ]
        out = self.run(spec.name, slots, pixel)
        task = spec.assemble(self.model, out, None, TaskSlots(slots))
        return task.final.masks, task.final.logits


class InteractiveGraph(_ImageGraph):
    """``pixels``, ``points [1,P,2]``, ``negative [1,P]`` (one prompt) -> ``masks``,
    ``logits [1,1,N]``."""

    def forward(self, pixels: torch.Tensor, points: torch.Tensor, negative: torch.Tensor):
        _, pixel = self.encode(pixels)
        spec = TASK_TABLE[InteractiveSegmentation]
        m, interface = self.model, self.model.interface
        levels = interface.image_levels(pixel)
        maps = interface.spatial_token_levels(levels, pixel)
        indicator = interface.pn_indicator.weight[negative.long()]  # 1xPxD
        convention = m.point_sampling().convention
        tokens = [sample_tokens(x, points, convention) + indicator for x in maps]
        valid = torch.ones_like(negative, dtype=torch.bool)
        ids = torch.zeros_like(negative, dtype=torch.long)
        slots = [
            proposal_slot(interface, f"{spec.name}/p.segment", 1),
            query_slot(interface, f"{spec.name}/q.spatial", [1]),
            SlotInput(
                f"{spec.name}/t.spatial",
                "token",
                tokens[0],
                tokens[0],
                valid,
                ids,
                levels=tokens,
            ),
        ]
        out = self.run(spec.name, slots, pixel)
        task = spec.assemble(m, out, None, TaskSlots(slots))
        return task.final.masks, task.final.logits


def export_graph(
    model: FindModel, task: str, *, size: tuple[int, int], prompts: int = 1
) -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str]]:
    """The graph of ``task`` and example inputs of the export shapes (and their names)."""
    if task not in EXPORT_TASKS:
        raise ValueError(f"task {task!r}: expected one of {list(EXPORT_TASKS)}")
    model = model.eval()
    device = model.device
    pixels = torch.zeros(1, 3, *size, device=device)
    if task == "generic":
        with torch.no_grad():
            table = model.class_embeddings([f"class {i}" for i in range(prompts)])
        return GenericGraph(model), (pixels, table), ["pixels", "class_table"]
    if task == "grounding":
        with torch.no_grad():
            text = model.encode_text([f"phrase {i}" for i in range(prompts)])
        inputs = (pixels, text.features, text.mask)
        return GroundingGraph(model), inputs, ["pixels", "text", "text_mask"]
    points = torch.full((1, prompts, 2), 0.5, device=device)
    negative = torch.zeros(1, prompts, dtype=torch.bool, device=device)
    return InteractiveGraph(model), (pixels, points, negative), ["pixels", "points", "negative"]


def dynamic_shapes(task: str, multiple: int) -> dict[str, dict[int, object]]:
    """``torch.export`` dynamic shapes of ``task``'s inputs: canvas sides as multiples of
    ``multiple`` (from 2 to :data:`MAX_SIDE` / ``multiple`` cells), and the prompt counts."""
    dim = torch.export.Dim
    cells = MAX_SIDE // multiple
    canvas = {2: multiple * dim("h", min=2, max=cells), 3: multiple * dim("w", min=2, max=cells)}
    if task == "generic":
        return {"pixels": canvas, "class_table": {0: dim("classes", min=2, max=65536)}}
    if task == "grounding":
        phrases, tokens = dim("phrases", min=2, max=4096), dim("tokens", min=2, max=4096)
        text = {0: phrases, 1: tokens}
        return {"pixels": canvas, "text": text, "text_mask": dict(text)}
    points = dim("points", min=2, max=65536)
    return {"pixels": canvas, "points": {1: points}, "negative": {1: points}}


def export_onnx(
    model: FindModel,
    task: str,
    out: str | Path,
    *,
    size: tuple[int, int],
    prompts: int = 1,
    dynamic: bool = True,
) -> Path:
    """Write the ONNX graph of ``task`` to ``out``.

    ``size`` (canvas, padded) and ``prompts`` (classes without background for generic,
    phrases for grounding, points for interactive) are the example the graph is traced with:
    with ``dynamic`` the graph takes any canvas of multiples of :func:`size_multiple` and any
    prompt count from 1 (the example then has at least 2 prompts: the exporter would fix a
    dimension of size 1 in the example); without, exactly these shapes.
    """
    multiple = size_multiple(model)
    if dynamic and any(s % multiple or s < 2 * multiple for s in size):
        raise ValueError(f"size {size}: a dynamic graph needs multiples of {multiple} from "
                         f"{2 * multiple}")  # fmt: skip
    prompts = max(prompts, 2) if dynamic else prompts
    graph, inputs, names = export_graph(model, task, size=size, prompts=prompts)
    shapes = dynamic_shapes(task, multiple) if dynamic else None
    out = Path(out)
    with torch.no_grad():
        torch.onnx.export(
            graph,
            inputs,
            str(out),
            input_names=names,
            output_names=["masks", "logits"],
            dynamo=True,
            dynamic_shapes=shapes,
            verbose=False,
        )
    return out
