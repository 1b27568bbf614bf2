"""Hard negative captions: an image's own caption with two of its colours swapped.

(:mod:`findvl.pretrain.negatives` replaces one word by another instead, for the encoders'
pretraining; both fix the article before a changed word with :func:`fix_article`.)

A caption such as "a red circle and a blue square" and its swap "a blue circle and a red
square" hold the same words; only the binding of colour to object tells them apart. With such
captions as further negatives of image -> text retrieval, the contrastive term cannot be met
by matching bags of words (NegCLIP, Yuksekgonul et al., "When and why vision-language models
behave like bags-of-words", ICLR 2023).
"""

from __future__ import annotations

import re

#: Colour words that are swapped (common colour names; the synthetic world uses a subset).
COLOUR_WORDS = frozenset(
    {
        "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
        "grey", "gray", "silver", "gold",
    }
)  # fmt: skip

_WORD = re.compile(r"[A-Za-z]+")


#: Words that join or relate noun phrases; they belong to none (see :func:`swap_words`).
JOINING_WORDS = frozenset(
    {
        "and", "of", "left", "right", "above", "below", "next", "to", "over", "on", "in",
        "front", "is", "it",
    }
)  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_CONVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_RELATION = re.compile(r"\b(left of|right of|above|below)\b", re.IGNORECASE)


def plural(word: str) -> str:
    """English plural of a shape name (``cross`` -> ``crosses``, ``star`` -> ``stars``)."""
    return word + ("es" if word.endswith(("s", "x", "sh", "ch")) else "s")


def swap_colours(caption: str) -> str | None:
    """``caption`` with its first two different colours swapped, or None if it has none.

    Only colours of noun phrases that the swap changes are swapped ("a red circle and a blue
    circle" stays: its swap says the same). The article before a swapped word follows its new
    first letter ("an orange cross" -> "a white cross"); capitals are kept.
    """
    return swap_words(caption, {c: (c, False) for c in COLOUR_WORDS})


def swap_words(
    caption: str, forms: dict[str, tuple[str, bool]], inflect=lambda word, many: word
) -> str | None:
    """``caption`` with two words of ``forms`` in different noun phrases exchanged, or None.

    ``forms`` maps each written form (lower case) to its base word and whether it is plural;
    ``inflect(base, plural)`` writes a base word in a number, so that "three stars and a cross"
    becomes "three crosses and a star". The first pair whose exchange changes what the caption
    says is taken: the two phrases must differ in more than the exchanged word ("a red circle,
    a red square" has no shape swap). Phrases are the runs of words between punctuation and
    :data:`JOINING_WORDS`; articles are ignored when they are compared.
    """
    words = list(_WORD.finditer(caption))
    phrase = _phrase_ids(caption, words)
    hits = [i for i, w in enumerate(words) if w.group().lower() in forms and phrase[i] >= 0]
    for x, i in enumerate(hits):
        for j in hits[x + 1 :]:
            (a, a_many), (b, b_many) = (
                forms[words[i].group().lower()],
                forms[words[j].group().lower()],
            )
            if a == b or phrase[i] == phrase[j]:
                continue
            new_i, new_j = inflect(b, a_many), inflect(a, b_many)
            if _phrase_words(words, phrase, i, new_i) != _phrase_words(
                words, phrase, j, words[j].group()
            ):
                return _replace(caption, words, {i: new_i, j: new_j})
    return None


def converse_relation(caption: str) -> str | None:
    """``caption`` with its first spatial relation turned round ("left of" -> "right of",
    "above" -> "below"), or None if it has none."""
    match = _RELATION.search(caption)
    if match is None:
        return None
    new = _CONVERSE[match.group(1).lower()]
    if match.group(1)[0].isupper():
        new = new.capitalize()
    return caption[: match.start(1)] + new + caption[match.end(1) :]


def _phrase_ids(caption: str, words: list[re.Match]) -> list[int]:
    """The noun phrase of each word (-1 for joining words); punctuation starts a new one."""
    ids, current, previous_end = [], 0, 0
    for w in words:
        if re.search(r"[^\sA-Za-z]", caption[previous_end : w.start()]):
            current += 1
        previous_end = w.end()
        if w.group().lower() in JOINING_WORDS:
            ids.append(-1)
            current += 1
        else:
            ids.append(current)
    return ids


def _phrase_words(words: list[re.Match], phrase: list[int], i: int, new: str) -> tuple[str, ...]:
    """The words of word ``i``'s phrase, lower case, articles left out, word ``i`` as ``new``."""
    return tuple(
        (new if k == i else w.group()).lower()
        for k, w in enumerate(words)
        if phrase[k] == phrase[i] and w.group().lower() not in _ARTICLES
    )


def fix_article(text: str, start: int, word: str) -> str:
    """``text[:start]`` with a trailing ``a``/``an`` made to agree with ``word``."""
    match = re.search(r"\b(a|an|A|An)\s+$", text[:start])
    if match is None:
        return text[:start]
    article = match.group(1)
    wanted = "an" if word[:1].lower() in "aeiou" else "a"
    if article[0].isupper():
        wanted = wanted.capitalize()
    return text[: match.start(1)] + wanted + text[match.end(1) : start]


def _replace(caption: str, words: list[re.Match], new: dict[int, str]) -> str:
    """Words ``new[i]`` in place of word ``i`` (first capital kept), articles fixed; the
    later word first, so the earlier one's offsets still hold."""
    text = caption
    for i in sorted(new, reverse=True):
        word = new[i].capitalize() if words[i].group()[:1].isupper() else new[i]
        text = fix_article(text, words[i].start(), word) + word + text[words[i].end() :]
    return text


def colour_swaps(captions: list[str]) -> list[str]:
    """One colour swap of each caption that has one, none equal to any of ``captions``."""
    true = {c.strip().lower() for c in captions}
    out: list[str] = []
    for caption in captions:
        swapped = swap_colours(caption)
        if swapped is not None and swapped.strip().lower() not in true and swapped not in out:
            out.append(swapped)
    return out
