"""The class vocabulary: a split's own categories, or a model's classes tied to them by name."""

import pytest

from findvl.data.readers.vocabulary import dataset_categories, dataset_vocabulary, vocabulary_of

CATEGORIES = [
    {"id": 7, "name": "sky", "isthing": 0},
    {"id": 2, "name": "dog", "isthing": 1},
    {"id": 5, "name": "cat"},  # no isthing: a thing
]


def test_the_split_categories_sorted_by_id():
    vocab = vocabulary_of(CATEGORIES)
    assert vocab.names == ["dog", "cat", "sky"]
    assert vocab.isthing == [True, True, False]
    assert vocab.category_ids == [2, 5, 7]
    assert vocab.index == {2: 0, 5: 1, 7: 2}


def test_model_classes_tied_by_name():
    vocab = vocabulary_of(CATEGORIES, ["sky", "horse", "dog"], [False, True, True])
    assert vocab.category_ids == [7, None, 2]
    assert vocab.index == {7: 0, 2: 2}  # the split has no horse
    assert vocab.isthing == [False, True, True]
    guessed = vocabulary_of(CATEGORIES, ["sky", "horse"], None)  # isthing from the categories
    assert guessed.isthing == [False, True]


def test_read_from_a_split(tmp_path, tiny_world):
    root = tiny_world(tmp_path / "w", images=1)
    vocab = dataset_vocabulary(root, "val")
    assert vocab.names == [
        c["name"] for c in sorted(dataset_categories(root, "val"), key=lambda c: c["id"])
    ]
    assert len(vocab.index) == len(vocab.names) and any(vocab.isthing) and not all(vocab.isthing)


def test_a_category_without_a_name_is_named(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "panoptic_val.json").write_text('{"categories": [{"id": 1}]}')
    with pytest.raises(ValueError, match=r"panoptic_val.json: categories\[0\]"):
        dataset_categories(tmp_path, "val")
