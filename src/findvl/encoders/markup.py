"""Interleaved text: FIND-Bench ``[id]<phrase>`` markup.

``"a [3]<dog> chases a [7]<red ball>"`` parses to the plain text ``"a dog chases a red ball"``
and the spans ``(3, 2, 5)``, ``(7, 15, 23)`` (entity id, start, end; end exclusive; offsets in
Python characters, i.e. unicode code points, the unit of fast tokenizers' offsets).

Queries whose entities are visual references are built from it with
:meth:`findvl.model.requests.InterleavedText.from_markup`.
"""

from __future__ import annotations

from dataclasses import dataclass

MARKUP_CHARS = "[]<>"


@dataclass(frozen=True)
class EntitySpan:
    """One marked phrase: ``text[start:end]`` belongs to entity ``entity_id``; its markup
    ``[id]<...>`` starts at ``raw[raw_start]``."""

    entity_id: int
    start: int
    end: int
    raw_start: int


@dataclass(frozen=True)
class ParsedMarkup:
    """Plain text and its entity spans in order of appearance."""

    text: str
    spans: tuple[EntitySpan, ...]


def _error(raw: str, position: int, message: str) -> ValueError:
    snippet = raw[max(0, position - 20) : position + 20]
    return ValueError(f"markup position {position}: {message} (near {snippet!r})")


def _parse_entity(raw: str, i: int) -> tuple[int, str, int]:
    """Parse ``[id]<phrase>`` starting at ``raw[i] == '['`` -> (id, phrase, index after ``>``)."""
    close = raw.find("]", i + 1)
    if close < 0:
        raise _error(raw, i, "'[' without a closing ']'")
    id_text = raw[i + 1 : close]
    if not (id_text.isascii() and id_text.isdigit()):
        raise _error(raw, i, f"entity id {id_text!r} is not a non-negative integer")
    if close + 1 >= len(raw) or raw[close + 1] != "<":
        raise _error(raw, close + 1, f"'[{id_text}]' must be followed by '<phrase>'")
    start = close + 2
    for j in range(start, len(raw)):
        if raw[j] == ">":
            phrase = raw[start:j]
            if not phrase.strip():
                raise _error(raw, start, f"empty phrase for entity {id_text}")
            return int(id_text), phrase, j + 1
        if raw[j] in "[]<":
            raise _error(raw, j, f"nested or unbalanced {raw[j]!r} inside a phrase")
    raise _error(raw, close + 1, "'<' without a closing '>'")


def parse_markup(raw: str) -> ParsedMarkup:
    """Parse FIND-Bench ``sentence_raw`` markup into plain text and entity spans.

    Raises:
        ValueError: naming the character position of nested or unbalanced brackets, an empty
            phrase or a non-integer id. ``[``, ``]``, ``<`` and ``>`` only occur as markup.
    """
    if not isinstance(raw, str):
        raise ValueError(f"markup: expected a string, got {type(raw).__name__}")
    pieces: list[str] = []
    spans: list[EntitySpan] = []
    length, i, plain_start = 0, 0, 0
    while i < len(raw):
        char = raw[i]
        if char not in MARKUP_CHARS:
            i += 1
            continue
        if char != "[":
            raise _error(raw, i, f"unbalanced {char!r}")
        pieces.append(raw[plain_start:i])
        length += i - plain_start
        raw_start = i
        entity_id, phrase, i = _parse_entity(raw, i)
        spans.append(EntitySpan(entity_id, length, length + len(phrase), raw_start))
        pieces.append(phrase)
        length += len(phrase)
        plain_start = i
    pieces.append(raw[plain_start:])
    return ParsedMarkup(text="".join(pieces), spans=tuple(spans))
