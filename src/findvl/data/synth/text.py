"""Text about a synthetic scene: captions, referring expressions and entity-marked captions.

All text is built from the attributes the scene was drawn with (shape, colour, size) and from
the centroids of the visible masks (spatial relations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STUFF_PHRASES = {"grass": "grass", "water": "water", "sand": "sand", "brick": "brick wall"}
STUFF_PREPOSITIONS = {"grass": "on", "water": "in", "sand": "on", "brick": "in front of"}
RELATIONS = ("left of", "right of", "above", "below", "next to")
RELATION_MARGIN = 0.06  # fraction of the image side a centroid must differ by for left/right/...
NEXT_TO_DISTANCE = 0.25  # centroids closer than this fraction of the image side are "next to"


@dataclass(frozen=True)
class TextObject:
    """What the text generator knows about one segment.

    Attributes:
        segment_id: panoptic segment id (= instance annotation id for things).
        category: category name (shape or stuff).
        isthing: True for shapes.
        colour: colour name (things only).
        size: size name (things only).
        centre: ``(y, x)`` centroid of the visible mask, as fractions of the image side.
    """

    segment_id: int
    category: str
    isthing: bool
    colour: str | None = None
    size: str | None = None
    centre: tuple[float, float] = (0.5, 0.5)


def with_article(noun_phrase: str, definite: bool) -> str:
    if definite:
        return f"the {noun_phrase}"
    return f"{'an' if noun_phrase[0] in 'aeiou' else 'a'} {noun_phrase}"


def describe(obj: TextObject, attributes: tuple[str, ...]) -> str:
    """Noun phrase without article, e.g. ``describe(o, ("size", "colour")) == "small red star"``."""
    if not obj.isthing:
        return STUFF_PHRASES[obj.category]
    words = [getattr(obj, a) for a in ("size", "colour") if a in attributes]
    return " ".join([*words, obj.category])


def _matches(obj: TextObject, target: TextObject, attributes: tuple[str, ...]) -> bool:
    """Whether ``obj`` fits the description of ``target`` by its category and ``attributes``."""
    return (
        obj.category == target.category
        and ("colour" not in attributes or obj.colour == target.colour)
        and ("size" not in attributes or obj.size == target.size)
    )


def holds(relation: str, a: TextObject, b: TextObject) -> bool:
    """Whether ``a`` is ``relation`` ``b`` (centroid based)."""
    dy, dx = a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]
    return {
        "left of": dx < -RELATION_MARGIN,
        "right of": dx > RELATION_MARGIN,
        "above": dy < -RELATION_MARGIN,
        "below": dy > RELATION_MARGIN,
        "next to": math.hypot(dx, dy) < NEXT_TO_DISTANCE,
    }[relation]


def main_relation(a: TextObject, b: TextObject) -> str:
    """The most salient relation of ``a`` to ``b``."""
    dy, dx = a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]
    if math.hypot(dx, dy) < NEXT_TO_DISTANCE and max(abs(dx), abs(dy)) < 2 * RELATION_MARGIN:
        return "next to"
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


_ATTRIBUTE_SETS = ((), ("colour",), ("size",), ("size", "colour"))


def unique_attributes(target: TextObject, things: list[TextObject]) -> tuple[str, ...] | None:
    """The smallest attribute set that tells ``target`` apart from the other things, if any."""
    others = [
        o for o in things if o.category == target.category and o.segment_id != target.segment_id
    ]
    for attributes in _ATTRIBUTE_SETS:
        if not any(_matches(o, target, attributes) for o in others):
            return attributes
    return None


def referring_expression(
    target: TextObject, things: list[TextObject], rng: np.random.Generator
) -> str | None:
    """A definite description that singles ``target`` out among ``things``, or None.

    Uses the fewest attributes that are unique; when attributes are not enough (or at random,
    for variety) adds a relation to a uniquely describable anchor, checked to exclude every
    other object with the same attributes.
    """
    attributes = unique_attributes(target, things)
    if attributes is not None and rng.random() < 0.5:
        return with_article(describe(target, attributes), definite=True)
    distractors = [
        o
        for o in things
        if o.segment_id != target.segment_id
        and _matches(o, target, attributes or _ATTRIBUTE_SETS[-1])
    ]
    for anchor in rng.permutation(len(things)):
        anchor = things[anchor]
        anchor_attributes = unique_attributes(anchor, things)
        if anchor.segment_id == target.segment_id or anchor_attributes is None:
            continue
        relation = main_relation(target, anchor)
        if holds(relation, target, anchor) and not any(
            holds(relation, d, anchor) for d in distractors
        ):
            head = with_article(describe(target, attributes or _ATTRIBUTE_SETS[-1]), definite=True)
            tail = with_article(describe(anchor, anchor_attributes), definite=True)
            return f"{head} {relation} {tail}"
    if attributes is None:
        return None
    return with_article(describe(target, attributes), definite=True)


def _count_phrase(names: list[str]) -> str:
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    parts = [
        f"{NUMBER_WORDS[c]} {n}s" if c > 1 else with_article(n, False) for n, c in counts.items()
    ]
    return join_words(parts)


def join_words(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(objects: list[TextObject], rng: np.random.Generator) -> list[str]:
    """Three different captions of a scene (counting, colours, one relation)."""
    things = [o for o in objects if o.isthing]
    stuff = join_words([STUFF_PHRASES[o.category] for o in objects if not o.isthing] or ["nothing"])
    count = NUMBER_WORDS[len(things)]
    first = f"A picture of {_count_phrase([o.category for o in things])} over {stuff}."
    coloured = [with_article(describe(o, ("colour",)), False) for o in things]
    second = f"{count.capitalize()} shape{'s' if len(things) > 1 else ''}: {join_words(coloured)}."
    if len(things) >= 2:
        a, b = (things[i] for i in rng.choice(len(things), size=2, replace=False))
        rel = main_relation(a, b)
        head = with_article(describe(a, ("size", "colour")), False)
        third = f"{head.capitalize()} {rel} {with_article(describe(b, ('size', 'colour')), False)}."
    else:
        head = with_article(describe(things[0], ("size", "colour")), False)
        third = f"{head.capitalize()} alone on a background of {stuff}."
    return [first, second, third]


@dataclass
class MarkedText:
    """Builds a sentence and its ``[segment_id]<phrase>`` markup in step.

    Attributes:
        sentence: plain text so far.
        sentence_raw: the same text with entity markup.
        phrases: per entity ``(segment_id, phrase, start, end, raw_start)``; ``start``/``end``
            index ``sentence`` (end exclusive), ``raw_start`` is where ``[`` of the markup is
            in ``sentence_raw``.
    """

    sentence: str = ""
    sentence_raw: str = ""
    phrases: list[tuple[int, str, int, int, int]] = field(default_factory=list)

    def text(self, text: str) -> MarkedText:
        self.sentence += text
        self.sentence_raw += text
        return self

    def entity(self, segment_id: int, phrase: str) -> MarkedText:
        start, raw_start = len(self.sentence), len(self.sentence_raw)
        self.sentence += phrase
        self.sentence_raw += f"[{segment_id}]<{phrase}>"
        self.phrases.append((segment_id, phrase, start, len(self.sentence), raw_start))
        return self


def entity_phrase(obj: TextObject, things: list[TextObject], definite: bool = False) -> str:
    """The phrase naming one segment in an entity caption ("a red circle", "the grass")."""
    if not obj.isthing:
        return with_article(describe(obj, ()), definite=True)
    attributes = unique_attributes(obj, things) or _ATTRIBUTE_SETS[-1]
    return with_article(describe(obj, attributes), definite=definite)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def entity_caption(objects: list[TextObject], rng: np.random.Generator) -> MarkedText:
    """One sentence with 2-4 entities: up to three shapes, their relations and a stuff region."""
    things = [o for o in objects if o.isthing]
    stuff = [o for o in objects if not o.isthing]
    picked = [things[i] for i in rng.permutation(len(things))[:3]]
    out = MarkedText()
    first = picked[0]
    out.entity(first.segment_id, _capitalised(entity_phrase(first, things)))
    if len(picked) >= 2:
        out.text(f" is {main_relation(first, picked[1])} ")
        out.entity(picked[1].segment_id, entity_phrase(picked[1], things))
    else:
        out.text(" lies")
    place = stuff[int(rng.integers(len(stuff)))]
    out.text(f" {STUFF_PREPOSITIONS[place.category]} ").entity(
        place.segment_id, describe_stuff(place)
    )
    if len(picked) == 3:
        out.text(", while ").entity(picked[2].segment_id, entity_phrase(picked[2], things))
        out.text(f" is {main_relation(picked[2], first)} it")
    return out.text(".")


def describe_stuff(obj: TextObject) -> str:
    return with_article(STUFF_PHRASES[obj.category], definite=True)


def entity_paragraph(objects: list[TextObject], rng: np.random.Generator) -> MarkedText:
    """Several sentences naming every segment, each shape related to the one before it."""
    things = [o for o in objects if o.isthing]
    stuff = [o for o in objects if not o.isthing]
    order = [things[i] for i in rng.permutation(len(things))]
    out = MarkedText().text("This scene shows ")
    for i, s in enumerate(stuff):
        out.text("" if i == 0 else (" and " if i == len(stuff) - 1 else ", "))
        out.entity(s.segment_id, describe_stuff(s))
    out.text(" with ")
    out.text(f"{NUMBER_WORDS[len(things)]} shape{'s' if len(things) > 1 else ''}. ")
    out.entity(order[0].segment_id, _capitalised(entity_phrase(order[0], things)))
    out.text(" catches the eye first.")
    for previous, current in zip(order, order[1:]):
        out.text(" ").entity(current.segment_id, _capitalised(entity_phrase(current, things)))
        out.text(f" is {main_relation(current, previous)} ")
        out.entity(previous.segment_id, entity_phrase(previous, things, definite=True)).text(".")
    return out
