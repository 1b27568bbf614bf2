"""The data-engine prompt (paper Algorithm 1) and the parser of its ``(id)<phrase>`` replies.

The language model receives an image's captions and its labelled regions and writes captions
in which every mention of a region is marked ``(entity_id)<phrase>``. :func:`parse_reply` turns
such a reply into FIND-Bench captions: the plain ``sentence``, the ``sentence_raw`` with the
FIND-Bench markup ``[entity_id]<phrase>`` and one :class:`ParsedPhrase` per mention.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

SYSTEM_PROMPT = (
    "You write grounded image captions. You do not see the image; you are given its captions "
    "and the labelled regions of its segmentation. You describe the image in fluent English and "
    "mark every mention of a labelled region with that region's entity id."
)

USER_TEMPLATE = """\
Generate {count} image caption(s) with grounded entities and their attributes from the \
information below.

Detailed image description (may contain errors):
{pseudo_captions}

Ground-truth image captions:
{captions}

Image size (width, height): ({width}, {height})

Ground-truth regions, one per line as "entity_id: category, box (x0, y0, w, h)", where (x0, y0) \
is the top-left corner of the box and (w, h) its size in pixels:
{regions}

Output format: write each mention of a region as (entity_id)<phrase>, where entity_id is the \
number of that region in the list above. An example output would be: "({example_a})<A woman> \
sitting next to ({example_b})<a handsome man>, with their hands holding together under \
({example_c})<the blue sky>." (this shows the format only; its words are not about this \
image).

Constraints:
1. Use only the entity ids listed above; never invent an id.
2. The phrase inside <...> is part of the caption itself: deleting every "(entity_id)<" and \
">" must leave natural, fluent sentence(s).
3. Describe attributes (colour, material, size, pose, action) and spatial relations between the \
entities where the captions and boxes support them; do not invent objects.
4. Use "<" and ">" only for the markup and never put one mark inside another.
5. Reply with exactly {count} caption(s), one per line, and nothing else."""

NONE_TEXT = "(none)"

# One "(id)" immediately followed by "<": the start of a mention.
_OPEN = re.compile(r"\(([^()<>]*)\)<")
# Optional list numbering ("1. ", "2) ", "- ") a model may put before each caption line.
_LIST_PREFIX = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'"}


@dataclass(frozen=True)
class PromptRegion:
    """One labelled region shown to the model.

    Attributes:
        entity_id: the panoptic segment id; the model cites it as ``(entity_id)``.
        category: category name, e.g. ``"dog"``.
        bbox: ``(x0, y0, w, h)`` in pixels, top-left corner and size.
        iscrowd: whether the region is a crowd of instances.
    """

    entity_id: int
    category: str
    bbox: tuple[float, float, float, float]
    iscrowd: bool = False


@dataclass(frozen=True)
class ParsedPhrase:
    """One grounded mention inside a parsed caption.

    Attributes:
        annotation_id: the region's entity (panoptic segment) id.
        phrase: the surface text, ``sentence[start_idx:end_idx]``.
        start_idx: offset of the phrase in the plain ``sentence`` (characters).
        end_idx: end of the phrase in ``sentence`` (exclusive).
        raw_start_idx: offset of its ``[id]<`` markup in ``sentence_raw`` (FIND-Bench's
            ``_start_idx``).
    """

    annotation_id: int
    phrase: str
    start_idx: int
    end_idx: int
    raw_start_idx: int


@dataclass(frozen=True)
class ParsedCaption:
    """One caption line of a reply.

    Attributes:
        sentence: plain text without markup.
        sentence_raw: the text with FIND-Bench markup ``[id]<phrase>`` for every kept mention.
        phrases: the kept mentions in order of appearance.
        dropped_ids: ids of mentions whose id is not a region of the image (left as plain text).
    """

    sentence: str
    sentence_raw: str
    phrases: tuple[ParsedPhrase, ...]
    dropped_ids: tuple[int, ...]


class MalformedReplyError(ValueError):
    """A reply whose markup cannot be parsed (nested, unbalanced, empty phrase, bad id)."""


def _format_number(value: float) -> str:
    return str(int(round(value))) if abs(value - round(value)) < 1e-6 else f"{value:.1f}"


def _format_region(region: PromptRegion) -> str:
    box = ", ".join(_format_number(v) for v in region.bbox)
    crowd = " (a group)" if region.iscrowd else ""
    return f"{region.entity_id}: {region.category}{crowd}, box ({box})"


def _join_captions(captions: Sequence[str]) -> str:
    cleaned = [" ".join(c.split()) for c in captions if c.strip()]
    return "\n".join(cleaned) if cleaned else NONE_TEXT


def build_messages(
    *,
    captions: Sequence[str],
    pseudo_captions: Sequence[str],
    regions: Sequence[PromptRegion],
    width: int,
    height: int,
    count: int = 1,
) -> list[dict[str, str]]:
    """Build the chat messages (system + user) for one image.

    Args:
        captions: ground-truth captions of the image.
        pseudo_captions: detailed, possibly noisy descriptions (e.g. from a captioning model).
        regions: the labelled regions the captions may cite; must not be empty.
        width: image width in pixels.
        height: image height in pixels.
        count: how many captions to ask for (one per reply line).

    Returns:
        ``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``, the
        ``messages`` of an OpenAI-compatible chat request.
    """
    if not regions:
        raise ValueError("build_messages: an image needs at least one region to ground")
    if count < 1:
        raise ValueError(f"build_messages: count must be >= 1, got {count}")
    ids = [r.entity_id for r in regions]
    examples = [ids[i % len(ids)] for i in range(3)]
    user = USER_TEMPLATE.format(
        count=count,
        pseudo_captions=_join_captions(pseudo_captions),
        captions=_join_captions(captions),
        width=width,
        height=height,
        regions="\n".join(_format_region(r) for r in regions),
        example_a=examples[0],
        example_b=examples[1],
        example_c=examples[2],
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _clean_line(line: str) -> str:
    line = _LIST_PREFIX.sub("", line.strip(), count=1).strip()
    if len(line) >= 2 and _QUOTES.get(line[0]) == line[-1]:
        line = line[1:-1].strip()
    return line


def _check_plain(text: str, *, line: str) -> None:
    for mark in "<>[]":  # FIND-Bench markup characters: sentence_raw holds them only as markup
        if mark in text:
            raise MalformedReplyError(f"stray {mark!r} outside (id)<phrase> markup in {line!r}")


def parse_caption(line: str, *, valid_ids: Collection[int]) -> ParsedCaption:
    """Parse one caption line with ``(id)<phrase>`` markup.

    Every mention is handled, in order. A mention whose id is not in ``valid_ids`` is dropped:
    its phrase stays in the text as plain words. Whitespace at the edges of a phrase stays in
    the sentence but outside the phrase span.

    Args:
        line: one caption, e.g. ``"(3)<A dog> on (9)<the grass>."``.
        valid_ids: the entity ids of the image's regions.

    Returns:
        The parsed caption; ``sentence[p.start_idx:p.end_idx] == p.phrase`` for every phrase.

    Raises:
        MalformedReplyError: nested or unbalanced ``<``/``>``, an empty phrase, a non-integer
            id, or a line with no mention at all.
    """
    plain: list[str] = []
    raw: list[str] = []
    phrases: list[ParsedPhrase] = []
    dropped: list[int] = []
    n_plain = n_raw = cursor = 0
    mentions = 0
    while (match := _OPEN.search(line, cursor)) is not None:
        before = line[cursor : match.start()]
        _check_plain(before, line=line)
        close = line.find(">", match.end())
        if close < 0:
            raise MalformedReplyError(f"unclosed '<' at offset {match.end() - 1} in {line!r}")
        inner = line[match.end() : close]
        if "<" in inner:
            raise MalformedReplyError(f"nested '<' at offset {match.end() - 1} in {line!r}")
        if "[" in inner or "]" in inner:
            raise MalformedReplyError(f"'[' or ']' inside a phrase in {line!r}")
        if not inner.strip():
            raise MalformedReplyError(f"empty phrase at offset {match.start()} in {line!r}")
        token = match.group(1).strip()
        if not token.isascii() or not token.isdigit():
            raise MalformedReplyError(f"entity id {token!r} is not an integer in {line!r}")
        entity_id = int(token)
        mentions += 1
        plain.append(before)
        raw.append(before)
        n_plain += len(before)
        n_raw += len(before)
        lead = len(inner) - len(inner.lstrip())
        phrase = inner.strip()
        if entity_id in valid_ids:
            phrases.append(
                ParsedPhrase(
                    annotation_id=entity_id,
                    phrase=phrase,
                    start_idx=n_plain + lead,
                    end_idx=n_plain + lead + len(phrase),
                    raw_start_idx=n_raw + lead,
                )
            )
            marked = f"{inner[:lead]}[{entity_id}]<{phrase}>{inner[lead + len(phrase) :]}"
        else:
            dropped.append(entity_id)
            marked = inner
        plain.append(inner)
        raw.append(marked)
        n_plain += len(inner)
        n_raw += len(marked)
        cursor = close + 1
    tail = line[cursor:]
    _check_plain(tail, line=line)
    if mentions == 0:
        raise MalformedReplyError(f"no (id)<phrase> mention in caption {line!r}")
    plain.append(tail)
    raw.append(tail)
    return ParsedCaption("".join(plain), "".join(raw), tuple(phrases), tuple(dropped))


def parse_reply(reply: str, *, valid_ids: Collection[int]) -> list[ParsedCaption]:
    """Parse a whole reply: one caption per non-empty line.

    List numbering (``"1. "``, ``"- "``) and quotes around a line are removed first.

    Args:
        reply: the model's message content.
        valid_ids: the entity ids of the image's regions.

    Returns:
        The captions in reply order.

    Raises:
        MalformedReplyError: the reply is empty or any line is malformed (see
            :func:`parse_caption`).
    """
    lines = [_clean_line(line) for line in reply.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise MalformedReplyError("empty reply")
    return [parse_caption(line, valid_ids=valid_ids) for line in lines]
