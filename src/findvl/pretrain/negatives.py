"""Hard negative captions (as in NegCLIP): a caption with one shape or one colour word swapped.

In a batch of synthetic images the colours and the backgrounds alone tell the captions apart, so
plain InfoNCE never has to learn the shapes. A negative that differs from the true caption in
only one shape word ("a red star" for "a red circle") can only be ranked below it by a model
that sees the shape; likewise for one colour word.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from findvl.data.hard_negatives import fix_article

_WORD = re.compile(r"[A-Za-z]+")


def plural(word: str) -> str:
    """English plural of a shape name (``cross`` -> ``crosses``, ``star`` -> ``stars``)."""
    return word + ("es" if word.endswith(("s", "x", "sh", "ch")) else "s")


@dataclass(frozen=True)
class NegativeVocabulary:
    """The words a negative may swap.

    Attributes:
        shapes: thing names (singular); their plurals are swapped too, keeping the number.
        colours: colour adjectives.
    """

    shapes: tuple[str, ...]
    colours: tuple[str, ...]

    @classmethod
    def synthetic(cls) -> NegativeVocabulary:
        """The shapes and colours of ``findvl data synth``."""
        from findvl.data.synth.world import COLOURS, THING_CATEGORIES

        return cls(shapes=tuple(c.name for c in THING_CATEGORIES), colours=tuple(COLOURS))


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
