import json

import numpy as np
import pytest

from findvl.cli import main
from findvl.prototypes import TASKS, VARIANTS, Prototype, get_prototype, prototype_set

# Table 1 of the paper, written out as (groups, content pairs, extra condition pairs).
TABLE1 = {
    "generic_segmentation": (
        ["f.image", "p.object", "q.class", "t.class"],
        {("p.object", "f.image"), ("q.class", "t.class")},
        set(),
    ),
    "grounded_segmentation": (
        ["f.image", "p.grounding", "q.description", "t.description"],
        {("p.grounding", "f.image"), ("q.description", "t.description")},
        {("p.grounding", "t.description")},
    ),
    "image_text_retrieval": (
        ["f.image", "q.image", "q.caption", "t.caption"],
        {("q.image", "f.image"), ("q.caption", "t.caption")},
        set(),
    ),
    "interactive_segmentation": (
        ["f.image", "p.segment", "q.spatial", "t.spatial"],
        {("p.segment", "f.image"), ("q.spatial", "t.spatial")},
        {("p.segment", "t.spatial")},
    ),
    "interleave_segmentation": (
        ["f.image", "p.entity", "q.entity", "t.spatial", "t.interleave"],
        {("p.entity", "f.image"), ("q.entity", "t.interleave"), ("t.interleave", "t.spatial")},
        {("p.entity", "t.interleave")},
    ),
    "interleave_retrieval": (
        ["f.image", "q.image", "q.interleave", "t.spatial", "t.interleave"],
        {("q.image", "f.image"), ("q.interleave", "t.interleave"), ("t.interleave", "t.spatial")},
        set(),
    ),
}


def _expected(groups, pairs):
    m = np.zeros((len(groups), len(groups)), dtype=int)
    for y, x in pairs:
        m[groups.index(y), groups.index(x)] = 1
    return m


@pytest.mark.parametrize("task", TASKS)
def test_paper_variant_is_table1(task):
    groups, content, extra = TABLE1[task]
    proto = get_prototype(task, "paper")
    assert list(proto.groups) == groups
    np.testing.assert_array_equal(proto.content_matrix(), _expected(groups, content))
    cond_groups = [g for g in groups if g != "f.image"]
    diagonal = {(g, g) for g in cond_groups}
    np.testing.assert_array_equal(
        proto.condition_matrix(), _expected(cond_groups, diagonal | extra)
    )


def test_official_variant_differences():
    g = get_prototype("grounded_segmentation", "official")
    c = g.condition_matrix()
    names = [n for n in g.groups if n != "f.image"]
    assert c[names.index("t.description"), names.index("p.grounding")] == 1
    assert c[names.index("p.grounding"), names.index("t.description")] == 1
    i = get_prototype("interactive_segmentation", "official")
    names = [n for n in i.groups if n != "f.image"]
    c = i.condition_matrix()
    assert c[names.index("p.segment"), names.index("m.spatial")] == 1
    assert c[names.index("p.segment"), names.index("t.spatial")] == 1
    assert i.content_matrix()[i.groups.index("m.spatial"), 0] == 1
    for task in ("image_text_retrieval", "interleave_retrieval"):
        proto = get_prototype(task, "official")
        assert proto.content_matrix()[proto.groups.index("p.object"), 0] == 1
    for task in ("generic_segmentation", "interleave_segmentation"):
        assert (
            get_prototype(task, "official").to_json()["content"]
            == get_prototype(task, "paper").to_json()["content"]
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_query_groups_never_see_each_other(variant):
    for task in TASKS:
        proto = get_prototype(task, variant)
        names = [n for n in proto.groups if n != "f.image"]
        c = proto.condition_matrix()
        queries = [n for n in names if n.startswith("q.")]
        for a in queries:
            for b in queries:
                assert c[names.index(a), names.index(b)] == int(a == b)


def test_eq6_first_row_shift_is_not_copied():
    # Eq. 6 as printed lets q.entity attend p.entity; Table 1 says q.entity:t.interleave.
    proto = get_prototype("interleave_segmentation", "paper")
    m = proto.content_matrix()
    row = m[proto.groups.index("q.entity")]
    assert row[proto.groups.index("t.interleave")] == 1
    assert row.sum() == 1


def test_prototype_validation():
    with pytest.raises(ValueError, match="f.image"):
        Prototype("x", "paper", ("f.image", "p.object"), (), ("p.object:f.image",), ())
    with pytest.raises(ValueError, match="q.class"):
        Prototype("x", "paper", ("f.image", "p.object"), ("q.class:f.image",), (), ())
    with pytest.raises(ValueError, match="task"):
        get_prototype("nope")
    with pytest.raises(ValueError, match="variant"):
        get_prototype("generic_segmentation", "nope")


def test_prototype_set_namespaces_groups():
    pset = prototype_set(list(TASKS))
    keys = [s.key for s in pset.slots]
    assert keys.count("p.object") == 1 and keys.count("q.image") == 1
    assert "interactive_segmentation/t.spatial" in keys
    assert "interleave_segmentation/t.spatial" in keys
    # two tasks' token groups never see each other
    assert ("interleave_segmentation/t.interleave", "interactive_segmentation/t.spatial") not in (
        pset.content_pairs
    )
    assert pset.id_matched(
        "interactive_segmentation/q.spatial", "interactive_segmentation/t.spatial"
    )
    # captions riding with one image are kept apart (each embedded as if alone)
    caption = ("image_text_retrieval/q.caption", "image_text_retrieval/t.caption")
    assert pset.id_matched(*caption) and not pset.condition_id_matched(*caption)
    assert pset.condition_id_matched(caption[0], caption[0])
    assert pset.condition_id_matched(caption[1], caption[1])
    assert not pset.condition_id_matched(
        "grounded_segmentation/t.description", "grounded_segmentation/t.description"
    )  # FIND: the phrases of one image see each other


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("task", TASKS)
def test_show_json_contract(task, variant, capsys):
    assert main(["prototypes", "show", task, "--variant", variant, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"task", "variant", "groups", "content", "condition"}
    assert data["task"] == task and data["variant"] == variant
    names = [g["name"] for g in data["groups"]]
    assert names[0] == "f.image"
    for g in data["groups"]:
        assert set(g) == {"name", "kind", "modality"}
        assert g["kind"] in {"feature", "proposal", "query", "token", "memory"}
        assert g["modality"] in {"vision", "language", "interleave"}
    assert len(data["content"]) == len(names) and all(len(r) == len(names) for r in data["content"])
    assert len(data["condition"]) == len(names) - 1
    assert all(v in (0, 1) for row in data["content"] + data["condition"] for v in row)


def test_show_grid_and_list(capsys):
    assert main(["prototypes", "list"]) == 0
    out = capsys.readouterr().out
    assert all(t in out for t in TASKS)
    for task in TASKS:
        assert main(["prototypes", "show", task]) == 0
        assert "conditional attention" in capsys.readouterr().out
