"""Readable tables of :func:`~findvl.evaluation.runner.evaluate_run` results, laid out like
the paper: generic segmentation, grounding, interactive, retrieval (Table 3) and interleaved
segmentation / retrieval with the baselines (Table 4)."""

from __future__ import annotations

from findvl.tables import format_table

# (section title, [(row label, result key path)], columns)
_SECTIONS = (
    (
        "Generic segmentation",
        [("", ())],
        (
            ("panoptic", "PQ"),
            ("panoptic", "SQ"),
            ("panoptic", "RQ"),
            ("instance", "AP"),
            ("instance", "AP50"),
            ("semantic", "mIoU"),
        ),
    ),
    (
        "Grounding",
        [
            ("refs", ("grounding",)),
            ("interleave", ("interleave_segmentation",)),
            ("long (zero-shot)", ("interleave_grounding_long",)),
        ],
        (("", "cIoU"), ("", "mIoU"), ("", "P@0.5")),
    ),
    (
        "Interactive",
        [("", ("interactive",))],
        (("", "mIoU@1"), ("", "mIoU@3"), ("", "mIoU@5"), ("", "NoC@85"), ("", "NoC@90")),
    ),
    (
        "Retrieval",
        [
            ("image-text", ("retrieval",)),
            ("interleave", ("interleave_retrieval",)),
            ("interleave, legend only", ("interleave_retrieval_legend",)),
            ("baseline: text only", ("baselines", "text_only")),
            ("baseline: embedding average", ("baselines", "embedding_average")),
        ],
        (("", "IR@1"), ("", "IR@5"), ("", "IR@10"), ("", "TR@1"), ("", "TR@5"), ("", "TR@10")),
    ),
)


def _get(result: dict, path: tuple[str, ...]) -> dict | None:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def format_report(result: dict) -> str:
    """Sections of aligned tables; tasks that were not run are left out, ``-`` = undefined."""
    blocks = []
    for title, rows, columns in _SECTIONS:
        table_rows = []
        for label, path in rows:
            part = _get(result, path)
            if part is None:
                continue
            cells = [
                (_get(part, (group,)) or {}).get(key) if group else part.get(key)
                for group, key in columns
            ]
            if any(v is not None for v in cells) or path:
                table_rows.append([label, *cells])
        if table_rows and any(v is not None for row in table_rows for v in row[1:]):
            headers = ("", *(key for _, key in columns))
            blocks.append(f"{title}\n{format_table(headers, table_rows)}")
    meta = result.get("meta", {})
    blocks.append(
        f"images: {meta.get('num_images')}  seed: {meta.get('seed')}  (values in %, NoC in clicks)"
    )
    return "\n\n".join(blocks)
