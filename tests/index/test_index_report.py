"""The report's search section: queries with a visual reference, top-k pictures, markdown."""

from __future__ import annotations

from PIL import Image

from findvl.data.readers.dataset import load_dataset
from findvl.index.report import search_examples, search_section


def test_search_section_draws_each_query_and_links_it(tmp_path, tiny_model, tiny_world) -> None:
    samples = load_dataset(tiny_world(tmp_path / "w", images=5), "val")
    model = tiny_model()
    examples = search_examples(model, samples, tmp_path / "pictures", queries=2, k=3)
    assert len(examples) == 2
    for ex in examples:
        assert "[image: " in ex.text and len(ex.hits) == 3
        assert ex.rank == next((r for r, h in enumerate(ex.hits, 1) if h.image == ex.target), None)
        scores = [h.score for h in ex.hits]
        assert scores == sorted(scores, reverse=True)
        with Image.open(ex.picture) as picture:  # reference + 3 ranked tiles in one row
            assert picture.width > 4 * 128 and picture.height < 2 * 128
    out = tmp_path / "report"
    markdown = search_section(model, samples, out / "section", link_root=out, queries=2, k=3)
    assert markdown.startswith("## Interleaved search")
    assert markdown.count("![search](section/search_") == 2
    assert sorted(p.name for p in (out / "section").iterdir()) == [
        "search_0.png",
        "search_1.png",
    ]
