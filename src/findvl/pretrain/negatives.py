"""Hard negative captions (as in NegCLIP) of encoder pretraining.

*Replacements*: a caption with one shape or one colour word replaced by another. In a batch of
synthetic images the colours and the backgrounds alone tell the captions apart, so plain
InfoNCE never has to learn the shapes. A negative that differs from the true caption in only
one shape word ("a red star" for "a red circle") can only be ranked below it by a model that
sees the shape; likewise for one colour word.

*Binding swaps*: the same words in other places, two colours, two sizes or two shapes
exchanged between noun phrases, or a relation turned round ("a red circle left of a blue
square" -> "a blue circle left of a red square", "... right of ..."). A bag of words cannot
tell them from the caption; only towers that bind attributes to objects and read word order
can.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from findvl.data.hard_negatives import converse_relation, fix_article, plural, swap_words

_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class NegativeVocabulary:
    """The words a negative may swap.

    Attributes:
        shapes: thing names (singular); their plurals are swapped too, keeping the number.
        colours: colour adjectives.
        sizes: size adjectives (only exchanged between phrases, by the binding swaps).
    """

    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...] = ()

    @classmethod
    def synthetic(cls) -> NegativeVocabulary:
        """The shapes and colours of ``findvl data synth``."""
        from findvl.data.synth.world import COLOURS, SIZES, THING_CATEGORIES

        return cls(
            shapes=tuple(c.name for c in THING_CATEGORIES),
            colours=tuple(COLOURS),
            sizes=tuple(SIZES),
        )


def swap_one_word(caption: str, words: Sequence[str], rng: random.Random, *, plurals: bool):
    """``caption`` with one occurrence of one of ``words`` replaced by a different one of them.

    The replacement keeps the case of the first letter and the number (when ``plurals``) and
    fixes a preceding ``a``/``an``. It is drawn among the words absent from the caption when
    there are any (so the negative is not another true description), otherwise among all the
    others. Returns None when the caption holds none of ``words``.
    """
    forms = {w: (w, False) for w in words}
    if plurals:
        forms.update({plural(w): (w, True) for w in words})
    hits = [m for m in _WORD.finditer(caption) if m.group().lower() in forms]
    if not hits or len(words) < 2:
        return None
    present = {forms[m.group().lower()][0] for m in hits}
    hit = rng.choice(hits)
    base, is_plural = forms[hit.group().lower()]
    choices = [w for w in words if w not in present] or [w for w in words if w != base]
    new = rng.choice(choices)
    text = plural(new) if is_plural else new
    if hit.group()[0].isupper():
        text = text.capitalize()
    return fix_article(caption, hit.start(), text) + text + caption[hit.end() :]


def hard_negatives(
    captions: Sequence[str], vocabulary: NegativeVocabulary, seed: int = 0
) -> list[tuple[str | None, str | None]]:
    """One (shape-swapped, colour-swapped) negative pair per caption (None where impossible)."""
    rng = random.Random(seed)
    return [
        (
            swap_one_word(c, vocabulary.shapes, rng, plurals=True),
            swap_one_word(c, vocabulary.colours, rng, plurals=False),
        )
        for c in captions
    ]


#: The kinds of :func:`hard_negatives` and :func:`binding_negatives`, in their order.
REPLACEMENT_KINDS = ("shape", "colour")
BINDING_KINDS = ("colour_swap", "size_swap", "shape_swap", "relation")


def binding_negatives(
    captions: Sequence[str], vocabulary: NegativeVocabulary
) -> list[tuple[str | None, ...]]:
    """Per caption, its swaps of :data:`BINDING_KINDS` (None where the caption has none)."""
    shapes = {w: (w, False) for w in vocabulary.shapes}
    shapes.update({plural(w): (w, True) for w in vocabulary.shapes})

    def inflect(word: str, many: bool) -> str:
        return plural(word) if many else word

    colours = {w: (w, False) for w in vocabulary.colours}
    sizes = {w: (w, False) for w in vocabulary.sizes}
    out = []
    for caption in captions:
        swaps = (
            swap_words(caption, colours),
            swap_words(caption, sizes),
            swap_words(caption, shapes, inflect),
            converse_relation(caption),
        )
        out.append(tuple(None if s is None or s == caption else s for s in swaps))
    return out


def caption_negatives(
    captions: Sequence[str],
    vocabulary: NegativeVocabulary,
    kinds: Sequence[str],
    seed: int = 0,
) -> list[tuple[str | None, ...]]:
    """Per caption, one negative of each of ``kinds`` (of :data:`REPLACEMENT_KINDS` and
    :data:`BINDING_KINDS`), in that order; None where a kind cannot be made."""
    unknown = set(kinds) - set(REPLACEMENT_KINDS) - set(BINDING_KINDS)
    if unknown:
        raise ValueError(f"unknown negative kinds {sorted(unknown)}")
    if not captions:
        return []
    columns: dict[str, list[str | None]] = {}
    if set(kinds) & set(REPLACEMENT_KINDS):
        pairs = hard_negatives(captions, vocabulary, seed=seed)
        columns.update(zip(REPLACEMENT_KINDS, map(list, zip(*pairs)), strict=True))
    if set(kinds) & set(BINDING_KINDS):
        swaps = binding_negatives(captions, vocabulary)
        columns.update(zip(BINDING_KINDS, map(list, zip(*swaps)), strict=True))
    return [tuple(columns[k][i] for k in kinds) for i in range(len(captions))]
