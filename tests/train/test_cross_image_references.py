"""Interleave retrieval trains on regions of other images, as its evaluation queries are."""

from types import SimpleNamespace

import pytest
import torch

from findvl.model.requests import (
    Entity,
    InterleavedText,
    InterleaveRetrieval,
    VisualPrompt,
    VisualReference,
)
from findvl.train.requests import cross_image_references


def _example(classes, colours, visual):
    """A 4x4 image with one 1x4 row per segment, each of one colour."""
    n = len(classes)
    masks = torch.zeros(n, 4, 4, dtype=torch.bool)
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    for k, colour in enumerate(colours):
        masks[k, k] = True
        image[:, k] = torch.tensor(colour, dtype=torch.uint8)[:, None]
    text = " ".join(f"e{k}" for k in range(n))
    return SimpleNamespace(
        image=image,
        masks=masks,
        classes=torch.tensor(classes),
        entity_text=text,
        entity_spans=[(3 * k, 3 * k + 2) for k in range(n)],
        entity_segments=list(range(n)),
        entity_strokes=[masks[k] if v else None for k, v in enumerate(visual)],
    )


def test_visual_entities_point_at_the_nearest_same_category_segment_of_another_image():
    red, blue, green = (200, 0, 0), (0, 0, 200), (0, 200, 0)
    examples = [
        _example([0, 1, 2], [red, red, green], [True, True, False]),
        _example([0, 0], [blue, (190, 10, 0)], [False, False]),  # a red-ish 0: nearest to 0
        _example([0, 3], [red, blue], [True, True]),  # category 3 is nowhere else
    ]
    texts = cross_image_references(examples)
    first = texts[0].entities
    assert first[0].reference.row == 2  # an exact red 0 in image 2 beats image 1's red-ish 0
    assert torch.equal(first[0].reference.prompt.positive, examples[2].masks[0])
    assert first[1].reference is None  # no category 1 elsewhere: the entity stays text
    assert first[2].reference is None  # a text entity stays text
    assert all(e.reference is None for e in texts[1].entities)
    assert texts[2].entities[0].reference.row == 0  # red 0 of image 0 (first after 2)
    assert texts[2].entities[1].reference is None
    for b, text in enumerate(texts):
        for e in text.entities:
            if e.reference is not None:
                assert e.reference.image is None and e.reference.row != b


@pytest.fixture(scope="module")
def find_tiny_model(tiny_model):
    torch.manual_seed(0)
    return tiny_model().eval()


def test_a_reference_row_outside_the_batch_is_named(find_tiny_model):
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[4:9, 4:9] = True
    ref = VisualReference(None, VisualPrompt(region), row=3)
    request = InterleaveRetrieval([InterleavedText("a cat", [Entity(0, 5, ref)])])
    with pytest.raises(ValueError, match=r"texts\[0\]\.entities\[0\]\.reference\.row: 3"):
        find_tiny_model([image], [request])


def test_a_batch_row_reference_reads_that_image(find_tiny_model):
    """The query of image 0 with a region of image 1 equals the query of image 0 given image 1
    as the reference image."""
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8) for _ in "ab"]
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[8:20, 10:24] = True

    def query(reference):
        text = InterleavedText("a cat and a dog", [Entity(0, 5, reference), Entity(10, 15)])
        request = InterleaveRetrieval([text, InterleavedText("a dog", [Entity(0, 5)])])
        with torch.no_grad():
            out = find_tiny_model(images, [request], generator=torch.Generator().manual_seed(1))
        return out.interleave_retrieval.final.query[0]

    by_row = query(VisualReference(None, VisualPrompt(region), row=1))
    by_image = query(VisualReference(images[1], VisualPrompt(region)))
    own = query(VisualReference(None, VisualPrompt(region)))
    torch.testing.assert_close(by_row, by_image, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(by_row, own, atol=1e-4)
