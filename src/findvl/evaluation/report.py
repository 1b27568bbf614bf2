"""The text table of :func:`~findvl.evaluation.runner.evaluate_run` results: the one results
layout of :mod:`findvl.tables` (task, metric, value), tasks that were not run left out."""

from __future__ import annotations

from findvl.tables import result_rows, rows_text


def format_report(result: dict) -> str:
    """The results table of ``result`` (``-`` = undefined) and a line on the run."""
    rows = result_rows(result)
    meta = result.get("meta", {})
    footer = (
        f"images: {meta.get('num_images')}  seed: {meta.get('seed')}  (values in %, NoC in clicks)"
    )
    return f"{rows_text(rows)}\n\n{footer}" if rows else footer
