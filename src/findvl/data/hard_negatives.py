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


def swap_colours(caption: str) -> str | None:
    """``caption`` with its first two different colours swapped, or None if it has none.

    Only colours that describe different words are swapped ("a red circle and a blue circle"
    stays: its swap says the same). The article before a swapped word follows its new first
    letter ("an orange cross" -> "a white cross"); capitals are kept.
    """
    words = list(_WORD.finditer(caption))
    colours = [i for i, w in enumerate(words) if w.group().lower() in COLOUR_WORDS]
    for x, i in enumerate(colours):
        for j in colours[x + 1 :]:
            a, b = words[i].group().lower(), words[j].group().lower()
            after_i = words[i + 1].group().lower() if i + 1 < len(words) else ""
            after_j = words[j + 1].group().lower() if j + 1 < len(words) else ""
            if a != b and after_i != after_j:
                return _replace(caption, words, {i: b, j: a})
    return None


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
