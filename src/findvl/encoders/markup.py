"""Interleaved text: FIND-Bench ``[id]<phrase>`` markup and queries with visual references.

``"a [3]<dog> chases a [7]<red ball>"`` parses to the plain text ``"a dog chases a red ball"``
and the spans ``(3, 2, 5)``, ``(7, 15, 23)`` (entity id, start, end; end exclusive; offsets in
Python characters, i.e. unicode code points, the unit of fast tokenizers' offsets).

In an interleaved query, an entity may be a *visual reference*: a region (mask or box) of another
image. Its phrase is replaced by the literal placeholder ``[INTERACTIVE]`` and the offsets of
every following entity are shifted. Every occurrence of a visual entity is replaced, each at its
own position (not by a global string replacement).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from findvl.encoders.language import entity_token_map

PLACEHOLDER = "[INTERACTIVE]"
MARKUP_CHARS = "[]<>"


@dataclass(frozen=True)
class EntitySpan:
    """One marked phrase: ``text[start:end]`` belongs to entity ``entity_id``."""

    entity_id: int
    start: int
    end: int


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
        entity_id, phrase, i = _parse_entity(raw, i)
        spans.append(EntitySpan(entity_id, length, length + len(phrase)))
        pieces.append(phrase)
        length += len(phrase)
        plain_start = i
    pieces.append(raw[plain_start:])
    return ParsedMarkup(text="".join(pieces), spans=tuple(spans))


@dataclass(frozen=True, eq=False)
class VisualReference:
    """A region of another image standing for an entity.

    Attributes:
        image_path: the image file (exclusive with ``image``).
        image: ``[3,H,W]`` RGB image (exclusive with ``image_path``).
        mask: ``[H,W]`` bool region (exclusive with ``box``).
        box: ``(x0, y0, x1, y1)`` in pixels of the image (exclusive with ``mask``).
    """

    image_path: Path | None = None
    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.image_path is None) == (self.image is None):
            raise ValueError("VisualReference: give exactly one of image_path and image")
        if (self.mask is None) == (self.box is None):
            raise ValueError("VisualReference: give exactly one of mask and box")
        if self.image is not None and (self.image.dim() != 3 or self.image.shape[0] != 3):
            raise ValueError(
                f"VisualReference.image: expected [3,H,W], got {tuple(self.image.shape)}"
            )
        if self.mask is not None and self.mask.dim() != 2:
            raise ValueError(f"VisualReference.mask: expected [H,W], got {tuple(self.mask.shape)}")
        if self.box is not None and not (
            len(self.box) == 4 and self.box[0] < self.box[2] and self.box[1] < self.box[3]
        ):
            raise ValueError(f"VisualReference.box: expected x0 < x1 and y0 < y1, got {self.box}")


@dataclass(frozen=True)
class EntityRef:
    """An entity of an interleaved query: ``text[start:end]``, visual if ``reference`` is set."""

    entity_id: int
    start: int
    end: int
    reference: VisualReference | None = None

    @property
    def is_visual(self) -> bool:
        return self.reference is not None


@dataclass(frozen=True)
class InterleavedQuery:
    """Text whose entities are phrases or visual references (``[INTERACTIVE]`` in ``text``).

    Attributes:
        text: the text the language encoder reads.
        entities: in order of position, non-overlapping; a visual entity spans a placeholder.
    """

    text: str
    entities: tuple[EntityRef, ...]

    def __post_init__(self) -> None:
        previous_end = 0
        for index, e in enumerate(self.entities):
            if not previous_end <= e.start < e.end <= len(self.text):
                raise ValueError(
                    f"entities[{index}]: span ({e.start}, {e.end}) is out of order, empty or "
                    f"outside the text of length {len(self.text)}"
                )
            if e.is_visual and self.text[e.start : e.end] != PLACEHOLDER:
                raise ValueError(f"entities[{index}]: a visual entity must span {PLACEHOLDER!r}")
            previous_end = e.end

    @classmethod
    def from_markup(
        cls, raw: str, references: Mapping[int, VisualReference] | None = None
    ) -> InterleavedQuery:
        """Parse ``[id]<phrase>`` markup; entities in ``references`` become visual.

        Every occurrence of a visual entity's phrase is replaced by ``[INTERACTIVE]`` and the
        offsets of all following entities are shifted by the length difference.
        """
        references = dict(references or {})
        parsed = parse_markup(raw)
        unknown = set(references) - {s.entity_id for s in parsed.spans}
        if unknown:
            raise ValueError(f"references: entities {sorted(unknown)} do not occur in {raw!r}")
        pieces, entities, cursor, length = [], [], 0, 0
        for span in parsed.spans:
            reference = references.get(span.entity_id)
            phrase = parsed.text[span.start : span.end] if reference is None else PLACEHOLDER
            pieces.append(parsed.text[cursor : span.start])
            length += span.start - cursor
            entities.append(EntityRef(span.entity_id, length, length + len(phrase), reference))
            pieces.append(phrase)
            length += len(phrase)
            cursor = span.end
        pieces.append(parsed.text[cursor:])
        return cls(text="".join(pieces), entities=tuple(entities))

    def token_map(self, offsets: torch.Tensor) -> torch.Tensor:
        """``[L,2]`` token offsets of ``text`` -> ``[E,L]`` bool, token t inside entity e."""
        return entity_token_map(offsets, [(e.start, e.end) for e in self.entities])


def token_maps(queries: list[InterleavedQuery], offsets: torch.Tensor) -> list[torch.Tensor]:
    """One ``[E_i,L]`` entity-token map per query from the batch offsets ``[B,L,2]``.

    ``offsets`` are ``TokenFeatures.offsets`` of ``encoder.encode([q.text for q in queries])``.
    """
    if len(queries) != offsets.shape[0]:
        raise ValueError(f"{len(queries)} queries but offsets for {offsets.shape[0]} texts")
    return [query.token_map(offsets[i]) for i, query in enumerate(queries)]
