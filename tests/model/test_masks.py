"""Token-level masks: padding and id matching, built from the compiled prototypes."""

import torch

from findvl.model.masks import MaskBuilder
from findvl.model.sequence_types import SlotInput
from findvl.prototypes import prototype_set


def _slot(key, kind, valid, ids=None, d=4):
    valid = torch.tensor(valid, dtype=torch.bool)
    x = torch.zeros(*valid.shape, d)
    return SlotInput(key, kind, x, x, valid, None if ids is None else torch.tensor(ids))


def test_spatial_queries_see_only_their_prompt_tokens():
    pset = prototype_set(["interactive_segmentation"])
    t = "interactive_segmentation"
    slots = [
        _slot(f"{t}/q.spatial", "query", [[True, True]], [[0, 1]]),
        _slot(f"{t}/t.spatial", "token", [[True, True, True, False]], [[0, 0, 1, -1]]),
    ]
    masks = MaskBuilder(slots, pset, pixel=None, previous_mask=None)
    assert [s.key for s in masks.token_columns] == [f"{t}/t.spatial"]
    expected = torch.tensor([[[True, True, False, False], [False, False, True, False]]])
    assert torch.equal(masks.content(0, {}), expected)
    # conditional attention: each group sees itself, padded tokens are blocked both ways
    cond = masks.condition[0]
    assert cond[:2, :2].all() and not cond[:2, 2:].any()
    assert torch.equal(cond[2:, 2:], torch.tensor([[1, 1, 1, 0]] * 3 + [[0, 0, 0, 0]]).bool())


def test_caption_query_sees_all_its_tokens_but_no_padding():
    pset = prototype_set(["image_text_retrieval"])
    t = "image_text_retrieval"
    slots = [
        _slot(f"{t}/q.caption", "query", [[True], [True]], [[0], [0]]),
        _slot(
            f"{t}/t.caption",
            "token",
            [[True, True, True], [True, False, False]],
            [[0, 0, 0], [0, -1, -1]],
        ),
    ]
    allowed = MaskBuilder(slots, pset, pixel=None, previous_mask=None).content(0, {})
    assert allowed.tolist() == [[[True, True, True]], [[True, False, False]]]


def test_interleave_tokens_see_their_entity_references_and_entities_their_tokens():
    pset = prototype_set(["interleave_segmentation"])
    t = "interleave_segmentation"
    slots = [
        _slot(f"{t}/q.entity", "query", [[True, True]], [[0, 1]]),
        _slot(f"{t}/t.interleave", "token", [[True, True, True, True]], [[-1, 0, 1, 1]]),
        _slot(f"{t}/t.spatial", "token", [[True, True]], [[1, 1]]),
    ]
    masks = MaskBuilder(slots, pset, pixel=None, previous_mask=None)
    allowed = masks.content(0, {})[0]
    rows = [s.key for s in masks.rows]
    assert rows == [f"{t}/q.entity", f"{t}/t.interleave"]
    # columns: 4 interleave tokens then 2 reference tokens
    assert allowed[0].tolist() == [False, True, False, False, False, False]
    assert allowed[1].tolist() == [False, False, True, True, False, False]
    assert allowed[2:6, 4:].tolist() == [[False, False], [False, False], [True, True], [True, True]]
    assert not allowed[2:6, :4].any()  # no t.interleave -> t.interleave content attention
