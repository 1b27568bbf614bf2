"""FIND-Bench markup and interleaved queries: parsing, errors, placeholders, token maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from findvl.encoders.language import TinyLanguageEncoder, entity_token_map
from findvl.encoders.loading import load_language_encoder
from findvl.encoders.markup import EntitySpan, parse_markup
from findvl.model.requests import Entity, InterleavedText, VisualPrompt, VisualReference
from findvl.model.slots import INTERACTIVE_TOKEN, splice_visual_entities


def test_parse_every_occurrence_and_entities_at_both_ends() -> None:
    parsed = parse_markup("[3]<A dog> chases [7]<a ball>; the [3]<dog> wins [12]<twice>")
    assert parsed.text == "A dog chases a ball; the dog wins twice"
    assert [parsed.text[s.start : s.end] for s in parsed.spans] == [
        "A dog",
        "a ball",
        "dog",
        "twice",
    ]
    assert [s.entity_id for s in parsed.spans] == [3, 7, 3, 12]
    assert [s.raw_start for s in parsed.spans] == [0, 18, 35, 49]
    assert parsed.spans[0] == EntitySpan(3, 0, 5, 0) and parsed.spans[-1].end == len(parsed.text)


def test_parse_unicode_and_plain_text() -> None:
    parsed = parse_markup("un [1]<chien brûlé 🐕> près du café")
    assert parsed.text == "un chien brûlé 🐕 près du café"
    span = parsed.spans[0]
    assert parsed.text[span.start : span.end] == "chien brûlé 🐕"
    assert parse_markup("no entities here").spans == ()


@pytest.mark.parametrize(
    "raw, message, position",
    [
        ("a [1]<dog", "without a closing '>'", 5),
        ("a [1]<d[2]<og>>", "nested or unbalanced '['", 7),
        ("a [1] dog", "must be followed by '<phrase>'", 5),
        ("a [x]<dog>", "'x' is not a non-negative integer", 2),
        ("a [-1]<dog>", "'-1' is not a non-negative integer", 2),
        ("a [1]<  >", "empty phrase", 6),
        ("a dog>", "unbalanced '>'", 5),
        ("a <dog>", "unbalanced '<'", 2),
        ("a [12", "'[' without a closing ']'", 2),
        ("a ]", "unbalanced ']'", 2),
    ],
)
def test_malformed_markup_names_the_position(raw: str, message: str, position: int) -> None:
    with pytest.raises(ValueError, match=rf"position {position}: .*{message}".replace("[", r"\[")):
        parse_markup(raw)


def _reference() -> VisualReference:
    return VisualReference(None, VisualPrompt(torch.ones(4, 4, dtype=torch.bool)))


def test_visual_entities_become_placeholders_with_shifted_offsets() -> None:
    raw = "[5]<a cat> sleeps near [6]<the sofa> and [5]<the cat> purrs"
    query = InterleavedText.from_markup(raw, {5: _reference()})
    text, spans = splice_visual_entities(query, "query")
    assert text == f"{INTERACTIVE_TOKEN} sleeps near the sofa and {INTERACTIVE_TOKEN} purrs"
    assert [text[s:e] for s, e in spans] == [INTERACTIVE_TOKEN, "the sofa", INTERACTIVE_TOKEN]
    assert [e.entity_id for e in query.entities] == [5, 6, 5]
    textual = InterleavedText.from_markup(raw)
    assert splice_visual_entities(textual, "q")[0] == parse_markup(raw).text


def test_query_validation() -> None:
    with pytest.raises(ValueError, match=r"entities \[9\] do not occur"):
        InterleavedText.from_markup("[1]<dog>", {9: _reference()})
    with pytest.raises(ValueError, match="outside the text"):
        splice_visual_entities(InterleavedText("a dog", [Entity(2, 9)]), "q")
    with pytest.raises(ValueError, match="overlaps"):
        splice_visual_entities(InterleavedText("a dog", [Entity(0, 4), Entity(2, 5)]), "q")


def test_token_map_from_tiny_encoder_offsets() -> None:
    query = InterleavedText.from_markup("[1]<red car> near [2]<trees>", {2: _reference()})
    text, spans = splice_visual_entities(query, "q")
    offsets = TinyLanguageEncoder(dim=8).encode([text]).offsets
    token_map = entity_token_map(offsets[0], spans)
    assert token_map.shape == (2, offsets.shape[1])
    assert token_map[0].nonzero().flatten().tolist() == [1, 2]  # BOS, red, car, near, ...
    words = [text[s:e] for s, e in offsets[0][token_map[1]].tolist()]
    assert words == ["[", "INTERACTIVE", "]"]  # the placeholder's tokens belong to entity 2


def test_token_map_from_hf_tokenizer_offsets(tmp_path: Path, monkeypatch, tiny_hf) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    encoder = load_language_encoder(tiny_hf.llama(tmp_path / "llama"), layer=-1)
    queries = [
        InterleavedText.from_markup("[4]<a dog> sits on [8]<the grass>"),
        InterleavedText.from_markup("two people walk [9]<a small dog>"),
    ]
    out = encoder.encode([q.text for q in queries])
    maps = [
        entity_token_map(out.offsets[i], [(e.start, e.end) for e in q.entities])
        for i, q in enumerate(queries)
    ]
    assert maps[0].sum(1).tolist() == [2, 2] and maps[1].sum(1).tolist() == [3]
    assert not maps[0][:, 0].any()  # BOS belongs to no entity
