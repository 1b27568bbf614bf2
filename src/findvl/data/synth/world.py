"""The vocabulary of the synthetic world: categories, colours, sizes and held-out combinations.

Category ids are stable: things are 1..8, stuff is 101..104 (as in COCO panoptic, stuff ids are
above thing ids). Changing this table changes every file the synthesiser writes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthCategory:
    """One category of the synthetic world.

    Attributes:
        id: COCO ``category_id``.
        name: the noun used in the text ("circle", "grass").
        isthing: True for countable shapes, False for background stuff.
    """

    id: int
    name: str
    isthing: bool


SYNTH_CATEGORIES: tuple[SynthCategory, ...] = (
    SynthCategory(1, "circle", True),
    SynthCategory(2, "square", True),
    SynthCategory(3, "triangle", True),
    SynthCategory(4, "star", True),
    SynthCategory(5, "hexagon", True),
    SynthCategory(6, "cross", True),
    SynthCategory(7, "ring", True),
    SynthCategory(8, "diamond", True),
    SynthCategory(101, "grass", False),
    SynthCategory(102, "water", False),
    SynthCategory(103, "sand", False),
    SynthCategory(104, "brick", False),
)
THING_CATEGORIES = tuple(c for c in SYNTH_CATEGORIES if c.isthing)
STUFF_CATEGORIES = tuple(c for c in SYNTH_CATEGORIES if not c.isthing)
CATEGORY_BY_ID = {c.id: c for c in SYNTH_CATEGORIES}

# Colour name -> base RGB; each object gets a jittered version of its base colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 215, 40),
    "purple": (140, 50, 190),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}

# Size name -> object radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.07, "medium": 0.11, "large": 0.17}

# (colour, shape) pairs never drawn in train with --holdout-combos, and shown in every val image.
HOLDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("blue", "triangle"),
    ("green", "ring"),
    ("yellow", "hexagon"),
    ("purple", "cross"),
)


def synth_categories_json() -> list[dict]:
    """The categories as COCO panoptic ``categories`` records (sorted by id)."""
    return [
        {
            "id": c.id,
            "name": c.name,
            "isthing": int(c.isthing),
            "supercategory": "shape" if c.isthing else "background",
        }
        for c in SYNTH_CATEGORIES
    ]
