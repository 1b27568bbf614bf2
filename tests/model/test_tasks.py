"""A task is one module in one explicit table; outputs have one layout per field; the
interface owns its embedding sampling."""

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import torch

from findvl.model import outputs, tasks
from findvl.model.outputs import ClassScores, FindOutput, ProposalScores
from findvl.model.requests import GenericSegmentation, GroundedSegmentation, Request
from findvl.postprocess import to_original
from findvl.prototypes import TASKS

MODEL = Path(tasks.__file__).resolve().parents[1]


def test_every_request_type_has_exactly_one_task_module():
    requests = set(typing.get_args(Request))
    assert set(tasks.TASK_TABLE) == requests
    names = [spec.name for spec in tasks.TASK_TABLE.values()]
    assert sorted(names) == sorted(TASKS)  # one module per prototype, none twice
    fields = {f.name for f in dataclasses.fields(FindOutput)}
    modules = set()
    for request, spec in tasks.TASK_TABLE.items():
        assert spec.request is request
        assert spec.name in fields  # the output field the task fills
        module = spec.slots.__module__
        assert module == spec.assemble.__module__ == spec.check.__module__
        assert module == f"findvl.model.tasks.{spec.name}"
        modules.add(module)
    assert len(modules) == len(TASKS)


def test_the_table_is_written_out_not_filled_by_imports():
    """No registry: the table module names every task module and every request type."""
    tree = ast.parse((MODEL / "tasks" / "__init__.py").read_text())
    table = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "TASK_TABLE"
    )
    assert isinstance(table.value, ast.Dict) and len(table.value.keys) == len(TASKS)


def test_check_requests_names_the_bad_request():
    with pytest.raises(ValueError, match=r"requests\[1\]: a second GroundedSegmentation"):
        tasks.check_requests([GroundedSegmentation([["a"]]), GroundedSegmentation([["b"]])], 1)
    with pytest.raises(ValueError, match=r"requests\[0\]: unknown request type str"):
        tasks.check_requests(["segment"], 1)
    with pytest.raises(ValueError, match=r"GroundedSegmentation.phrases\[1\]: the list is empty"):
        tasks.check_requests([GroundedSegmentation([["a"], []])], 2)
    with pytest.raises(ValueError, match="GenericSegmentation.classes: the list is empty"):
        tasks.check_requests([GenericSegmentation([])], 1)
    got = tasks.check_requests([GroundedSegmentation([["a"]]), GenericSegmentation(["x"])], 1)
    assert list(got) == ["generic_segmentation", "grounded_segmentation"]  # table order


def test_outputs_have_one_layout_per_field(tiny_model, images, all_requests):
    model = tiny_model()
    imgs = images([(64, 64), (48, 64)], seed=3)
    with torch.no_grad():
        out = model(imgs, all_requests(imgs))
    assert not hasattr(out, "extras")
    n = model.interface.num_proposals
    generic = out.generic_segmentation
    assert all(type(layer) is ClassScores for layer in generic.layers)
    assert generic.final.logits.shape == (2, n, len(generic.class_names) + 1)  # BxNxK+1
    for name in ("grounded_segmentation", "interactive_segmentation", "interleave_segmentation"):
        task = getattr(out, name)
        assert all(type(layer) is ProposalScores for layer in task.layers)
        b, t = task.valid.shape
        assert task.final.logits.shape == (b, t, n)  # BxTxN
    # the one canvas -> image conversion: the output's method is the function everyone used
    masks = out.grounded_segmentation.best_masks()[1]
    got = out.to_original(masks, 1)
    assert got.shape == (masks.shape[0], 48, 64)
    ref = to_original(
        masks, input_size=out.input_sizes[1], canvas=out.canvas, original_size=(48, 64)
    )
    assert torch.equal(got, ref)
    assert to_original is outputs.masks_to_original


def test_only_the_interface_touches_its_embedding_weights():
    weights = {"pn_indicator", "query_feat", "query_embed", "mask_spatial_embed"}
    for path in sorted(MODEL.rglob("*.py")):
        if path.name == "interface.py":
            continue
        tree = ast.parse(path.read_text())
        used = {
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute)
            and n.value.attr == "interface"
        } | {
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "interface"
        }
        assert not used & weights, f"{path.name} reaches into the interface: {used & weights}"


def test_heads_masks_and_interface_import_their_types_for_real():
    """No type-only import circle: the sequence types live in a plain module."""
    for name in ("heads.py", "masks.py", "interface.py"):
        assert "TYPE_CHECKING" not in (MODEL / name).read_text(), name
