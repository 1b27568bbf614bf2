"""Hard negative captions of encoder pretraining: how they are made and how the loss uses them."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from findvl.data.hard_negatives import plural
from findvl.pretrain.config import ObjectiveConfig
from findvl.pretrain.data import tokenize_captions
from findvl.pretrain.losses import clip_loss
from findvl.pretrain.negatives import (
    BINDING_KINDS,
    REPLACEMENT_KINDS,
    NegativeVocabulary,
    binding_negatives,
    caption_negatives,
    hard_negatives,
    swap_one_word,
)
from findvl.pretrain.tokenizer import train_tokenizer
from findvl.pretrain.trainer import dense_class_weight, train_step

VOCAB = NegativeVocabulary.synthetic()
PLURALS = {plural(s) for s in VOCAB.shapes}
SHAPES = set(VOCAB.shapes) | PLURALS
CAPTIONS = [
    "A picture of three stars, a cross, a square and a circle over water and sand.",
    "Six shapes: an orange circle, an orange cross, a white square and a blue diamond.",
    "A large yellow square right of a small yellow star.",
    "A small orange hexagon above a small blue ring.",
    "Two shapes: a red triangle and a green circle.",
]


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


def test_the_vocabulary_is_the_synthetic_shapes_and_colours() -> None:
    assert set(VOCAB.shapes) == {
        "circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond",
    }  # fmt: skip
    assert {"red", "blue", "orange"} <= set(VOCAB.colours)
    assert plural("cross") == "crosses" and plural("star") == "stars"


@pytest.mark.parametrize("seed", range(40))
def test_a_shape_negative_replaces_exactly_one_shape_word_by_another(seed: int) -> None:
    rng = random.Random(seed)
    for caption in CAPTIONS:
        negative = swap_one_word(caption, VOCAB.shapes, rng, plurals=True)
        old, new = words(caption), words(negative)
        assert len(old) == len(new)
        changed = [(a, b) for a, b in zip(old, new) if a != b and a.lower() not in ("a", "an")]
        assert len(changed) == 1, (caption, negative)
        (a, b), = changed  # fmt: skip
        assert a.lower() in SHAPES and b.lower() in SHAPES and a.lower() != b.lower()
        assert (a.lower() in PLURALS) == (b.lower() in PLURALS)  # the number is kept
        for article, word in zip(new, new[1:]):  # a/an agree with the next word
            if article.lower() in ("a", "an"):
                assert (article.lower() == "an") == (word[0].lower() in "aeiou"), negative


def test_negatives_prefer_shapes_absent_from_the_caption_and_need_a_word_to_swap() -> None:
    rng = random.Random(0)
    caption = "Two shapes: a red triangle and a green circle."
    for _ in range(50):
        negative = swap_one_word(caption, VOCAB.shapes, rng, plurals=True)
        new_shapes = {w for w in words(negative) if w in SHAPES}
        assert len(new_shapes) == 2 and new_shapes != {"triangle", "circle"}
    assert swap_one_word("A picture of the background.", VOCAB.shapes, rng, plurals=True) is None
    pairs = hard_negatives(["A picture of two circles over sand.", *CAPTIONS], VOCAB, seed=3)
    assert pairs[0][1] is None  # no colour word
    shape, colour = pairs[2]
    assert "orange" in colour and colour != CAPTIONS[1] and shape != CAPTIONS[1]
    assert pairs == hard_negatives(["A picture of two circles over sand.", *CAPTIONS], VOCAB, 3)


def test_clip_loss_appends_the_negatives_to_the_image_to_text_side_only() -> None:
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    texts = F.normalize(images + 0.3 * torch.randn(4, 8, generator=g), dim=-1)
    negatives = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * images @ texts.T
    target = torch.arange(4)
    i2t = F.cross_entropy(torch.cat([logits, scale * images @ negatives.T], 1), target)
    expected = 0.5 * (i2t + F.cross_entropy(logits.T, target))
    assert clip_loss(images, texts, scale, negatives) == pytest.approx(expected.item(), rel=1e-5)
    assert clip_loss(images, texts, scale, negatives[:0]) == clip_loss(images, texts, scale)
    hard = clip_loss(images, texts, scale, texts.roll(1, 0))  # close to the positives
    assert hard > clip_loss(images, texts, scale, negatives) > clip_loss(images, texts, scale)


def test_train_step_encodes_the_negatives_and_adds_them_to_the_loss(build_tiny, tiny_data) -> None:
    captions = [f"a {c} {s}" for c in ("red", "blue", "green") for s in ("ring", "star")]
    tokenizer = train_tokenizer([*captions, "a white cross number 1"] * 4, vocab_size=1024)
    model, data = build_tiny(tokenizer), tiny_data(tokenizer, count=6)
    rows = caption_negatives(words_of(data, tokenizer), VOCAB, REPLACEMENT_KINDS)
    ids, mask, negative_ids, negative_mask = tokenize_captions(
        tokenizer, words_of(data, tokenizer), negatives=rows
    )
    assert negative_ids.shape == negative_mask.shape == (6, 2, ids.shape[1])
    data = replace(
        data, caption_ids=ids, caption_mask=mask, negative_ids=negative_ids,
        negative_mask=negative_mask,
    )  # fmt: skip
    made = negative_mask.any(-1).flatten()
    flat_ids, flat_mask = negative_ids.flatten(0, 1)[made], negative_mask.flatten(0, 1)[made]
    for caption, rows, masks in zip(words_of(data, tokenizer), negative_ids, negative_mask):
        for row, row_mask, swapped in zip(rows, masks, (SHAPES, set(VOCAB.colours))):
            text = tokenizer.decode(row[row_mask], skip_special_tokens=True)
            pairs = zip(words(caption), words(text))
            diff = [(a, b) for a, b in pairs if a != b and a not in ("a", "an")]
            assert len(diff) == 1 and set(diff[0]) <= swapped, (caption, text)
    images = torch.arange(6)
    on = ObjectiveConfig(hard_negatives=True)
    _, with_negatives = train_step(model, data, images, images, on)
    _, without = train_step(model, data, images, images, replace(on, hard_negatives=False))
    with torch.no_grad():
        out = model(data.pixels, data.caption_ids, data.caption_mask)
        negative = model.encode_texts(flat_ids, flat_mask)
        expected = clip_loss(out.image_embeds, out.text_embeds, out.logit_scale, negative)
        plain = clip_loss(out.image_embeds, out.text_embeds, out.logit_scale)
    assert int(made.sum()) == 12  # every caption has a shape and a colour to swap
    assert with_negatives["clip"] == pytest.approx(expected.item(), abs=1e-4)
    assert without["clip"] == pytest.approx(plain.item(), abs=1e-4)
    assert with_negatives["clip"] > without["clip"]


def test_binding_swaps_exchange_words_between_objects_and_turn_relations_round() -> None:
    rows = binding_negatives(CAPTIONS, VOCAB)
    assert dict(zip(BINDING_KINDS, rows[0], strict=True)) == {
        "colour_swap": None,  # no colour
        "size_swap": None,
        "shape_swap": (
            "A picture of three crosses, a star, a square and a circle over water and sand."
        ),
        "relation": None,
    }  # fmt: skip
    assert rows[1][0] == (
        "Six shapes: a white circle, an orange cross, an orange square and a blue diamond."
    )  # the orange cross keeps its colour: its swap with the circle would say the same
    assert rows[1][2] == (
        "Six shapes: an orange square, an orange cross, a white circle and a blue diamond."
    )  # circle and cross are both orange: exchanging them would say the same
    assert rows[2] == (
        None,  # one colour
        "A small yellow square right of a large yellow star.",
        "A large yellow star right of a small yellow square.",
        "A large yellow square left of a small yellow star.",
    )
    assert rows[3][0] == "A small blue hexagon above a small orange ring."
    assert rows[3][1] is None  # both small
    assert rows[3][3] == "A small orange hexagon below a small blue ring."
    for caption, row in zip(CAPTIONS, rows, strict=True):  # the same words, other places
        for negative in row:
            if negative is not None:
                assert negative != caption
                strip = [w.lower() for w in words(negative) if w.lower() not in ("a", "an")]
                base = [w.lower() for w in words(caption) if w.lower() not in ("a", "an")]
                assert len(strip) == len(base)


def test_caption_negatives_orders_the_kinds_as_asked() -> None:
    both = caption_negatives(CAPTIONS, VOCAB, REPLACEMENT_KINDS + BINDING_KINDS, seed=3)
    assert [row[:2] for row in both] == hard_negatives(CAPTIONS, VOCAB, seed=3)
    assert [row[2:] for row in both] == binding_negatives(CAPTIONS, VOCAB)
    swaps, replaced = binding_negatives(CAPTIONS, VOCAB), hard_negatives(CAPTIONS, VOCAB, seed=3)
    assert caption_negatives(CAPTIONS, VOCAB, ("relation", "shape"), seed=3) == [
        (b[3], r[0]) for b, r in zip(swaps, replaced)
    ]
    with pytest.raises(ValueError, match="unknown negative kinds"):
        caption_negatives(CAPTIONS, VOCAB, ("word_order",))


def test_thing_classes_can_weigh_more_in_the_dense_loss(tiny_data) -> None:
    tokenizer = train_tokenizer(["a red ring", "a blue star"] * 4, vocab_size=1024)
    data = tiny_data(tokenizer, count=6)  # classes: void, a (thing), b (thing), c (stuff)
    plain = dense_class_weight(data, ObjectiveConfig())
    heavy = dense_class_weight(data, ObjectiveConfig(thing_weight=3.0))
    assert torch.allclose(heavy, plain * torch.tensor([1.0, 3.0, 3.0, 1.0]))


def words_of(data, tokenizer) -> list[str]:
    """The decoded captions of ``data``."""
    return [
        tokenizer.decode(ids[mask], skip_special_tokens=True)
        for ids, mask in zip(data.caption_ids, data.caption_mask)
    ]


def test_negative_accuracy_counts_the_captions_their_image_scores_above_each_negative() -> None:
    from findvl.pretrain.data import ClassTable, PretrainData
    from findvl.pretrain.evaluate import negative_accuracy

    table = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8]]), dim=-1)

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # token 0 names the text
        return table[ids[:, 0]]

    images = table[[0, 1]]  # image 0 is text 0, image 1 is text 1
    data = PretrainData(
        pixels=torch.zeros(2, 3, 4, 4), patch_counts=torch.zeros(2, 1, 2, dtype=torch.int16),
        caption_ids=torch.tensor([[0], [1], [0]]), caption_mask=torch.ones(3, 1, dtype=torch.bool),
        caption_image=torch.tensor([0, 1, 0]),
        classes=ClassTable(("void", "x"), (1,), (False, True)), image_ids=[1, 2],
        # kind "near": text 2 (close to 0) for captions 0 and 2, text 2 for caption 1 (0.6 < 1)
        # kind "far": text 1 (beaten) for caption 0, text 3 (0.8 < 1) for caption 1, none for 2
        negative_ids=torch.tensor([[[2], [1]], [[2], [3]], [[2], [0]]]),
        negative_mask=torch.tensor([[[True], [True]], [[True], [True]], [[True], [False]]]),
        negative_kinds=("near", "far"),
    )  # fmt: skip
    accuracy = negative_accuracy(encode, data, images, encode(data.caption_ids, None))
    assert accuracy == {"near": 100.0, "far": 100.0}
    moved = replace(data, caption_image=torch.tensor([1, 1, 0]))  # caption 0 on image 1
    assert negative_accuracy(encode, moved, images, encode(data.caption_ids, None)) == {
        "near": pytest.approx(200 / 3, abs=0.01),  # captions 1 and 2 of 3 still win
        "far": 50.0,  # caption 1 of the two with a "far" negative
    }
