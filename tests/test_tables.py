"""The aligned text tables of the command line and the reports."""

from findvl.tables import (
    METRICS,
    ResultRow,
    format_table,
    format_value,
    lookup,
    result_rows,
    rows_markdown,
    rows_text,
)


def test_cells_and_alignment():
    assert [format_value(v) for v in (None, 1.0 / 3, 7, "x")] == ["-", "0.33", "7", "x"]
    text = format_table(("", "PQ", "n"), [["All", 12.345, 3], ["Things", None, 10]])
    assert text.splitlines() == [
        "           PQ   n",
        "------  -----  --",
        "All     12.35   3",
        "Things      -  10",
    ]


def test_every_metric_has_one_name_and_a_task_of_the_model():
    from findvl.prototypes import TASKS

    keys = [m.key for m in METRICS]
    assert len(keys) == len(set(keys))
    assert {m.task for m in METRICS} == set(TASKS)
    # AP50 is COCO's box / mask AP only; the share of entities with IoU >= 0.5 is P@0.5
    assert {m.section for m in METRICS if m.name == "AP50"} == {"instance", "instance_bbox"}
    masks = ("grounding", "interleave_segmentation", "interleave_grounding_long")
    assert {m.section for m in METRICS if m.name == "P@0.5"} == {
        f"{task}{part}" for task in masks for part in ("", ".things", ".stuff")
    }
    assert not any("spatial" in m.key or "spatial" in m.task for m in METRICS)


def test_result_rows_follow_the_metrics_dict():
    metrics = {
        "retrieval": {"TR@1": 40.0, "IR@1": 50.0, "num_images": 4},  # order from METRICS
        "grounding": {"cIoU": None, "P@0.5": 10.0},
        "baselines": {"text_only": {"IR@5": 7.0, "num_queries": 3}},
        "meta": {"num_images": 4},
        "train": {"steps": 3, "minutes": 1.0},
    }
    rows = result_rows(metrics, {"retrieval.IR@1": 25.0})
    assert rows == [
        ResultRow("grounded_segmentation", "grounding.cIoU", None),
        ResultRow("grounded_segmentation", "grounding.P@0.5", 10.0),
        ResultRow("image_text_retrieval", "retrieval.IR@1", 50.0, 25.0),
        ResultRow("image_text_retrieval", "retrieval.TR@1", 40.0),
        ResultRow("interleave_retrieval", "baselines.text_only.IR@5", 7.0),
    ]
    assert rows_text(rows[2:4], with_chance=True).splitlines() == [
        "task                  metric          value  chance",
        "--------------------  --------------  -----  ------",
        "image_text_retrieval  retrieval.IR@1  50.00   25.00",
        "image_text_retrieval  retrieval.TR@1  40.00       -",
    ]
    assert rows_markdown(rows[:1]).splitlines() == [
        "| task | metric | value |",
        "|---|---|---:|",
        "| grounded_segmentation | grounding.cIoU | - |",
    ]
    assert result_rows({"meta": {}}) == []


def test_lookup_reads_nested_and_dotted_keys():
    metrics = {"grounding": {"P@0.5": 1.0}, "baselines": {"text_only": {"IR@5": 2.0}}}
    assert lookup(metrics, "grounding.P@0.5") == 1.0
    assert lookup(metrics, "baselines.text_only.IR@5") == 2.0
    assert lookup(metrics, "grounding.P@0.9") is None and lookup({"a.b": 3}, "a.b") == 3
