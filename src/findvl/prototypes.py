"""Task prototypes (paper §2, Table 1): a task is data, not code.

A :class:`Prototype` declares the embedding groups a task uses and its attention rules, written
as the paper writes them: ``"y:x"`` means group ``y`` may attend group ``x``. The shorthands
``p:p``, ``q:q``, ``t:t`` (and ``m:m``) mean *each* proposal / query / token (memory) group
attends itself -- two different query groups never see each other, which is what makes query
embeddings indexable. Content attention may use ``f.image``; conditional attention never does.

Two variants exist where the paper and the released weights differ (see :data:`VARIANTS`):
``paper`` is Table 1 exactly; ``official`` is what the released FIND checkpoints were trained
with. A :class:`PrototypeSet` compiles several tasks into one sequence (see
:mod:`findvl.model.masks` for token-level masks).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import numpy as np

from findvl.config import Variant

Kind = Literal["feature", "proposal", "query", "token", "memory"]
Modality = Literal["vision", "language", "interleave"]

_KIND_PREFIX = {"f": "feature", "p": "proposal", "q": "query", "t": "token", "m": "memory"}


@dataclass(frozen=True)
class Group:
    """One embedding group of a prototype, e.g. ``p.object`` (proposal, vision)."""

    name: str
    kind: Kind
    modality: Modality

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "modality": self.modality}


def _group(name: str, modality: Modality) -> Group:
    return Group(name, _KIND_PREFIX[name.split(".")[0]], modality)  # type: ignore[arg-type]


#: Every group the paper names (plus the spatial memory of the released weights).
GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        _group("f.image", "vision"),
        _group("p.object", "vision"),
        _group("q.class", "language"),
        _group("t.class", "language"),
        _group("p.grounding", "vision"),
        _group("q.description", "language"),
        _group("t.description", "language"),
        _group("q.image", "vision"),
        _group("q.caption", "language"),
        _group("t.caption", "language"),
        _group("p.segment", "vision"),
        _group("q.spatial", "vision"),
        _group("t.spatial", "vision"),
        _group("p.entity", "interleave"),
        _group("q.entity", "interleave"),
        _group("t.interleave", "interleave"),
        _group("q.interleave", "interleave"),
        _group("m.spatial", "vision"),
    )
}

#: The image features every task attends, the object proposals of generic segmentation (and of
#: the official retrieval prototypes) and the image query of both retrieval tasks.
IMAGE_FEATURES, OBJECT_PROPOSALS, IMAGE_QUERY = "f.image", "p.object", "q.image"

#: Groups that are one shared variable when several tasks run in one forward.
SHARED_GROUPS = frozenset({IMAGE_FEATURES, OBJECT_PROPOSALS, IMAGE_QUERY})

TASKS = (
    "generic_segmentation",
    "grounded_segmentation",
    "image_text_retrieval",
    "interactive_segmentation",
    "interleave_segmentation",
    "interleave_retrieval",
)
VARIANTS = typing.get_args(Variant)
DEFAULT_VARIANT = "official"


def parse_rule(rule: str) -> tuple[str, str]:
    """``"p.object:f.image"`` -> ``("p.object", "f.image")``; validates the syntax."""
    parts = rule.split(":")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"attention rule {rule!r}: expected 'row:column', e.g. 'p.object:f.image'")
    return parts[0].strip(), parts[1].strip()


@dataclass(frozen=True)
class Prototype:
    """A task as data.

    Attributes:
        task: task name, one of :data:`TASKS` (or a new one).
        variant: ``"paper"`` or ``"official"``.
        groups: group names in sequence order (``f.image`` first).
        content: content-attention rules ``"y:x"``.
        condition: conditional-attention rules ``"y:x"`` (shorthands ``p:p`` etc. allowed).
        projections: output spaces used (``"pixel"``, ``"semantic"``).
        optional: groups present only when the request supplies them (e.g. spatial memory,
            which needs a previous mask).
    """

    task: str
    variant: str
    groups: tuple[str, ...]
    content: tuple[str, ...]
    condition: tuple[str, ...]
    projections: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.groups:
            if name not in GROUPS:
                raise ValueError(f"prototype {self.task}: unknown group {name!r}")
        for field, rules in (("content", self.content), ("condition", self.condition)):
            for y, x in self.expand(rules):
                for name in (y, x):
                    if name not in self.groups:
                        raise ValueError(
                            f"prototype {self.task}.{field}: rule '{y}:{x}' names {name!r}, "
                            f"which is not one of its groups {list(self.groups)}"
                        )
                if field == "condition" and "f.image" in (y, x):
                    raise ValueError(f"prototype {self.task}: conditional attention has no f.image")

    def group_objects(self) -> list[Group]:
        return [GROUPS[name] for name in self.groups]

    def expand(self, rules: tuple[str, ...]) -> list[tuple[str, str]]:
        """Rules with the shorthands ``p:p``/``q:q``/``t:t``/``m:m`` expanded to group pairs."""
        pairs: list[tuple[str, str]] = []
        for rule in rules:
            y, x = parse_rule(rule)
            if y == x and y in _KIND_PREFIX:
                pairs += [(g, g) for g in self.groups if g.split(".")[0] == y]
            else:
                pairs.append((y, x))
        return pairs

    def content_matrix(self) -> np.ndarray:
        """``[G,G]`` 0/1 over :attr:`groups`; entry ``[y, x]`` = 1 if row y attends column x."""
        return self._matrix(self.groups, self.expand(self.content))

    def condition_matrix(self) -> np.ndarray:
        """``[G',G']`` 0/1 over :attr:`groups` without ``f.image``."""
        names = tuple(g for g in self.groups if g != "f.image")
        return self._matrix(names, self.expand(self.condition))

    @staticmethod
    def _matrix(names: tuple[str, ...], pairs: list[tuple[str, str]]) -> np.ndarray:
        index = {n: i for i, n in enumerate(names)}
        m = np.zeros((len(names), len(names)), dtype=np.int64)
        for y, x in pairs:
            m[index[y], index[x]] = 1
        return m

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "variant": self.variant,
            "groups": [g.to_json() for g in self.group_objects()],
            "content": self.content_matrix().tolist(),
            "condition": self.condition_matrix().tolist(),
        }


_SELF = ("p:p", "q:q", "t:t")


def _paper() -> dict[str, Prototype]:
    def p(task, groups, content, condition, projections):
        return Prototype(task, "paper", groups, content, condition, projections)

    return {
        "generic_segmentation": p(
            "generic_segmentation",
            ("f.image", "p.object", "q.class", "t.class"),
            ("p.object:f.image", "q.class:t.class"),
            _SELF,
            ("pixel", "semantic"),
        ),
        "grounded_segmentation": p(
            "grounded_segmentation",
            ("f.image", "p.grounding", "q.description", "t.description"),
            ("p.grounding:f.image", "q.description:t.description"),
            (*_SELF, "p.grounding:t.description"),
            ("pixel", "semantic"),
        ),
        "image_text_retrieval": p(
            "image_text_retrieval",
            ("f.image", "q.image", "q.caption", "t.caption"),
            ("q.image:f.image", "q.caption:t.caption"),
            _SELF,
            ("semantic",),
        ),
        "interactive_segmentation": p(
            "interactive_segmentation",
            ("f.image", "p.segment", "q.spatial", "t.spatial"),
            ("p.segment:f.image", "q.spatial:t.spatial"),
            (*_SELF, "p.segment:t.spatial"),
            ("pixel", "semantic"),
        ),
        "interleave_segmentation": p(
            "interleave_segmentation",
            ("f.image", "p.entity", "q.entity", "t.spatial", "t.interleave"),
            ("p.entity:f.image", "q.entity:t.interleave", "t.interleave:t.spatial"),
            (*_SELF, "p.entity:t.interleave"),
            ("pixel", "semantic"),
        ),
        "interleave_retrieval": p(
            "interleave_retrieval",
            ("f.image", "q.image", "q.interleave", "t.spatial", "t.interleave"),
            ("q.image:f.image", "q.interleave:t.interleave", "t.interleave:t.spatial"),
            _SELF,
            ("semantic",),
        ),
    }


def _official() -> dict[str, Prototype]:
    """The released weights' rules (official config ``ATTENTION_ARCH``; spec §1.5).

    Differences from Table 1: grounding tokens also see grounding proposals (bidirectional);
    segment proposals also see the spatial memory, which attends the image under the previous
    mask; the image query of both retrieval tasks is the attention pooling of object proposals,
    so ``p.object`` takes part.
    """
    paper = _paper()

    def o(task, groups=None, content=None, condition=None, optional=()):
        base = paper[task]
        return Prototype(
            task,
            "official",
            groups or base.groups,
            content or base.content,
            condition or base.condition,
            base.projections,
            optional,
        )

    return {
        "generic_segmentation": o("generic_segmentation"),
        "grounded_segmentation": o(
            "grounded_segmentation",
            condition=(*_SELF, "p.grounding:t.description", "t.description:p.grounding"),
        ),
        "image_text_retrieval": o(
            "image_text_retrieval",
            groups=("f.image", "p.object", "q.image", "q.caption", "t.caption"),
            content=("p.object:f.image", "q.image:f.image", "q.caption:t.caption"),
        ),
        "interactive_segmentation": o(
            "interactive_segmentation",
            groups=("f.image", "p.segment", "q.spatial", "t.spatial", "m.spatial"),
            content=("p.segment:f.image", "q.spatial:t.spatial", "m.spatial:f.image"),
            condition=(*_SELF, "m:m", "p.segment:t.spatial", "p.segment:m.spatial"),
            optional=("m.spatial",),
        ),
        "interleave_segmentation": o("interleave_segmentation"),
        "interleave_retrieval": o(
            "interleave_retrieval",
            groups=("f.image", "p.object", "q.image", "q.interleave", "t.spatial", "t.interleave"),
            content=(
                "p.object:f.image",
                "q.image:f.image",
                "q.interleave:t.interleave",
                "t.interleave:t.spatial",
            ),
        ),
    }


_PROTOTYPES = {"paper": _paper(), "official": _official()}


def get_prototype(task: str, variant: str = DEFAULT_VARIANT) -> Prototype:
    """The prototype of ``task`` in ``variant``; ``ValueError`` naming the bad argument."""
    if variant not in _PROTOTYPES:
        raise ValueError(f"variant {variant!r}: expected one of {list(VARIANTS)}")
    if task not in _PROTOTYPES[variant]:
        raise ValueError(f"task {task!r}: expected one of {list(TASKS)}")
    return _PROTOTYPES[variant][task]


#: Content-attention pairs between a query/token group and a token group that also match ids:
#: a spatial query sees only its own prompt's tokens, a description query only its phrase's
#: tokens, an entity query only its entity's tokens, an interleave token only the visual
#: reference tokens of its own entity, a caption query only its own caption's tokens.
ID_MATCHED = frozenset(
    {
        ("q.spatial", "t.spatial"),
        ("q.description", "t.description"),
        ("q.entity", "t.interleave"),
        ("t.interleave", "t.spatial"),
        ("q.caption", "t.caption"),
    }
)

#: Conditional-attention pairs that also match ids: several captions of one image (training's
#: further captions) are embedded apart, each as if it were the image's only one.
CONDITION_ID_MATCHED = frozenset({("q.caption", "q.caption"), ("t.caption", "t.caption")})


@dataclass(frozen=True)
class Slot:
    """A group as it appears in a compiled sequence: ``key`` is unique in the sequence."""

    key: str
    group: Group
    tasks: tuple[str, ...]


class PrototypeSet:
    """Several prototypes compiled into one sequence with one pair of group-level masks.

    Groups in :data:`SHARED_GROUPS` are one slot for every task; every other group is
    namespaced by its task (``"grounded_segmentation/q.description"``), so two tasks never see
    each other's embeddings.
    """

    def __init__(self, prototypes: list[Prototype]) -> None:
        if not prototypes:
            raise ValueError("prototypes: at least one task is required")
        tasks = [p.task for p in prototypes]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"prototypes: duplicate tasks in {tasks}")
        self.prototypes = list(prototypes)
        slots: dict[str, Slot] = {}
        for proto in prototypes:
            for name in proto.groups:
                key = self.key(proto.task, name)
                if key in slots:
                    old = slots[key]
                    slots[key] = Slot(key, old.group, (*old.tasks, proto.task))
                else:
                    slots[key] = Slot(key, GROUPS[name], (proto.task,))
        self.slots: list[Slot] = list(slots.values())
        self.content_pairs = self._pairs("content")
        self.condition_pairs = self._pairs("condition")

    @staticmethod
    def key(task: str, name: str) -> str:
        return name if name in SHARED_GROUPS else f"{task}/{name}"

    def _pairs(self, which: str) -> frozenset[tuple[str, str]]:
        pairs = set()
        for proto in self.prototypes:
            rules = proto.content if which == "content" else proto.condition
            for y, x in proto.expand(rules):
                pairs.add((self.key(proto.task, y), self.key(proto.task, x)))
        return frozenset(pairs)

    def id_matched(self, row_key: str, col_key: str) -> bool:
        """Whether content attention from ``row_key`` to ``col_key`` also requires equal ids."""
        return (row_key.split("/")[-1], col_key.split("/")[-1]) in ID_MATCHED

    def condition_id_matched(self, row_key: str, col_key: str) -> bool:
        """Whether conditional attention from ``row_key`` to ``col_key`` requires equal ids."""
        return (row_key.split("/")[-1], col_key.split("/")[-1]) in CONDITION_ID_MATCHED


def prototype_set(tasks: list[str], variant: str = DEFAULT_VARIANT) -> PrototypeSet:
    return PrototypeSet([get_prototype(t, variant) for t in tasks])
