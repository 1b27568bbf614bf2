"""report.md / report.html: real Markdown rendering, metrics tables with a chance row."""

import json

import torch
from PIL import Image

from findvl import report
from findvl.data.readers.dataset import load_dataset
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.metrics.io import rle_to_json


def test_render_html_renders_headings_and_tables():
    md = "# Title\n\nsome *text*\n\n" + report.tables_markdown({"panoptic": {"PQ": 12.345}})
    page = report.render_html(md + "\n<script>x</script>\n", title="t")
    assert "<h1>Title</h1>" in page and "<em>text</em>" in page
    assert "# Title" not in page and "<script>" not in page  # raw HTML is escaped
    assert page.count("<table>") == 1  # one results table
    assert "<td>generic_segmentation</td>" in page and "<td>panoptic.PQ</td>" in page
    assert ">12.35</td>" in page


def test_tables_markdown_adds_a_chance_column():
    chance = {"retrieval.IR@1": 1.0, "retrieval.TR@1": None}
    md = report.tables_markdown({"retrieval": {"IR@1": 30.0, "TR@1": None}}, chance)
    assert md.splitlines() == [
        "| task | metric | value | chance |",
        "|---|---|---:|---:|",
        "| image_text_retrieval | retrieval.IR@1 | 30.00 | 1.00 |",
        "| image_text_retrieval | retrieval.TR@1 | - | - |",
    ]


def test_write_report_markdown_and_html(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_synth(SynthConfig(root, 4, seed=1, size=64, split="val"), progress=False)
    samples = load_dataset(root, "val")
    out = tmp_path / "qs"
    (out / "eval").mkdir(parents=True)
    gt = [(s.image_id, s.panoptic.load_masks()[0]) for s in samples]
    records = [{"image_id": i, "entity_id": 0, "segmentation": rle_to_json(m)} for i, m in gt]
    (out / "eval" / "grounding_gt.json").write_text(json.dumps(records))
    picture = out / "pictures" / "panoptic.png"
    picture.parent.mkdir()
    Image.new("RGB", (8, 8)).save(picture)

    def figures(predictor, samples, vocab, out, threshold):
        return [("Panoptic segmentation", f"threshold {threshold}", picture)]

    monkeypatch.setattr(report, "_figures", figures)
    monkeypatch.setattr(report, "FindPredictor", lambda model, seed: None)  # pictures only
    monkeypatch.setattr(report, "search_section", lambda *a, **k: "## Interleaved search\n")
    metrics = {
        "retrieval": {"IR@1": 50.0, "TR@1": 40.0, "IR@5": 100.0, "num_images": 4},
        "grounding": {"cIoU": 20.0, "mIoU": 25.0, "P@0.5": 10.0},
        "meta": {"num_images": 4},
        "train": {"minutes": 1.0, "steps": 3},
        "seed": 0,
    }
    report.write_report(out, torch.nn.Identity(), None, root, metrics)
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert md.startswith("# findvl quickstart")
    assert "| image_text_retrieval | retrieval.IR@1 | 50.00 | 25.00 |" in md  # IR@1 = 1/4
    baseline = report.full_image_baseline([int(m.sum()) for _, m in gt], [m.size for _, m in gt])
    assert f"| grounding.cIoU | 20.00 | {baseline['cIoU']:.2f} |" in md
    assert f"| grounding.mIoU | 25.00 | {baseline['mIoU']:.2f} |" in md
    assert f"threshold {report.OBJECT_THRESHOLD}" in md
    assert "<h1>findvl quickstart</h1>" in page and "# findvl" not in page
    assert page.count("<table>") == 1
    assert '<img src="pictures/panoptic.png" alt="Panoptic segmentation"' in page
