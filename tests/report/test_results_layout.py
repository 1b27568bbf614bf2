"""One layout for every results table: ``findvl evaluate`` prints the rows the report shows."""

from __future__ import annotations

import findvl.cli as cli
from findvl import report
from findvl.tables import METRICS

#: A metrics dict with every section ``evaluate_run`` writes, some values undefined.
METRICS_DICT = {
    "panoptic": {"PQ": 31.25, "SQ": 70.0, "RQ": 40.0, "PQ_things": 20.0, "PQ_stuff": None},
    "instance": {"AP": 12.5, "AP50": 30.0, "AP75": 10.0},
    "semantic": {"mIoU": 44.4, "fwIoU": 50.0, "pACC": 80.0},
    "grounding": {"cIoU": 20.0, "mIoU": 25.0, "P@0.5": 10.0, "num_entities": 8},
    "interactive": {"mIoU@1": 60.0, "mIoU@5": 80.0, "NoC@85": 4.5, "num_objects": 2},
    "retrieval": {"IR@1": 50.0, "IR@5": 100.0, "TR@1": 40.0, "num_images": 4},
    "interleave_segmentation": {"cIoU": 15.0, "mIoU": 16.0, "P@0.5": 0.0},
    "interleave_retrieval": {"IR@5": 75.0, "num_gallery": 4},
    "interleave_retrieval_legend": {"IR@5": 50.0, "num_gallery": 4},
    "interleave_grounding_long": {"cIoU": 5.0, "mIoU": None, "P@0.5": 0.0},
    "baselines": {"text_only": {"IR@5": 25.0}, "embedding_average": {"IR@5": 50.0}},
    "train": {"minutes": 1.0, "steps": 3},
    "meta": {"num_images": 4, "seed": 0},
}


def _text_rows(text: str) -> list[tuple[str, ...]]:
    lines = text.split("\n\n")[0].splitlines()
    assert lines[0].split() == ["task", "metric", "value"]
    return [tuple(line.split()) for line in lines[2:]]


def _markdown_rows(markdown: str) -> list[tuple[str, ...]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert lines[0] == "| task | metric | value |"
    return [tuple(c.strip() for c in line.strip("|").split("|")) for line in lines[2:]]


def test_cli_table_and_report_table_show_the_same_rows(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("findvl.cli.evaluate.evaluate_args", lambda *a, **k: METRICS_DICT)
    assert cli.main(["evaluate", str(tmp_path), "--data", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    cli_rows = _text_rows(text)
    assert cli_rows == _markdown_rows(report.tables_markdown(METRICS_DICT))
    shown = {metric for _, metric, _ in cli_rows}
    assert len(cli_rows) == 30 and shown <= {m.key for m in METRICS}
    assert ("generic_segmentation", "instance.AP50", "30.00") in cli_rows
    assert ("interleave_segmentation", "interleave_grounding_long.mIoU", "-") in cli_rows
    assert ("interactive_segmentation", "interactive.NoC@85", "4.50") in cli_rows
    assert not any(m.startswith(("train.", "meta.")) or "num_" in m for m in shown)
    assert "images: 4  seed: 0" in text
