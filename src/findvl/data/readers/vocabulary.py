"""The class vocabulary of a split: class names, thing/stuff, and the dataset category of each.

Training uses the split's own categories (sorted by id); evaluation ties a trained model's class
names to the split's categories by name, so a model may know classes the split lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from findvl.data.readers.dataset import DatasetPaths
from findvl.jsonio import get_field, get_int, get_list, load_json


@dataclass(frozen=True)
class Vocabulary:
    """Class vocabulary of a model or a split, tied to the split's categories.

    Attributes:
        names: class index -> name (the generic-segmentation vocabulary).
        isthing: class index -> thing (True) or stuff (False).
        category_ids: class index -> dataset category id (None: not in the dataset).
    """

    names: list[str]
    isthing: list[bool]
    category_ids: list[int | None]

    @property
    def index(self) -> dict[int, int]:
        """Dataset category id -> class index (only the categories the vocabulary names)."""
        return {c: i for i, c in enumerate(self.category_ids) if c is not None}


def dataset_categories(root: str | Path, split: str) -> list[dict]:
    """The ``categories`` records of the split's panoptic JSON, checked (``id`` and ``name``)."""
    path = DatasetPaths.standard(root, split).panoptic_json
    data = load_json(path)
    categories = get_list(data, "categories", path.name)
    for i, record in enumerate(categories):
        where = f"{path.name}: categories[{i}]"
        get_int(record, "id", where)
        get_field(record, "name", str, where)
    return categories


def vocabulary_of(
    categories: Sequence[dict],
    class_names: Sequence[str] | None = None,
    isthing: Sequence[bool] | None = None,
) -> Vocabulary:
    """``class_names`` (with ``isthing``) tied to ``categories`` by name.

    Without ``class_names`` the categories sorted by id are the vocabulary. Without a matching
    ``isthing`` each class takes its category's (a thing when the category is unknown).
    """
    by_name = {c["name"]: c for c in categories}
    if not class_names:
        cats = sorted(categories, key=lambda c: int(c["id"]))
        return Vocabulary(
            [c["name"] for c in cats],
            [bool(c.get("isthing", 1)) for c in cats],
            [int(c["id"]) for c in cats],
        )
    if isthing is None or len(isthing) != len(class_names):
        isthing = [bool(by_name.get(n, {}).get("isthing", 1)) for n in class_names]
    ids = [int(by_name[n]["id"]) if n in by_name else None for n in class_names]
    return Vocabulary(list(class_names), list(isthing), ids)


def dataset_vocabulary(
    root: str | Path,
    split: str,
    class_names: Sequence[str] | None = None,
    isthing: Sequence[bool] | None = None,
) -> Vocabulary:
    """:func:`vocabulary_of` the split's categories (:func:`dataset_categories`)."""
    return vocabulary_of(dataset_categories(root, split), class_names, isthing)
