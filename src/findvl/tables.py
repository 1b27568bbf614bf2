"""Aligned text tables, and the one layout of every results table.

:func:`result_rows` turns a metrics dict (the layout of ``metrics.json`` and of
``findvl evaluate --json``: ``{"panoptic": {"PQ": ...}, "baselines": {"text_only": {...}}}``)
into :class:`ResultRow` ``(task, metric, value, chance)``. The command line prints the rows with
:func:`rows_text`, the reports with :func:`rows_markdown`, so every results table lists the same
rows under the same names: the task as named in ``model/tasks/`` and the metric as its key in
the metrics dict (``panoptic.PQ``, ``baselines.text_only.IR@5``). ``P@0.5`` (the share of
entities with IoU >= 0.5) keeps its name; ``AP50`` is only COCO's box / mask AP at IoU 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def format_value(value: Any) -> str:
    """A table cell: floats with two decimals, ``None`` (undefined) as ``-``."""
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1) -> str:
    """Plain aligned text table; the first ``left`` columns are left-aligned, the others
    right-aligned."""
    cells = [list(headers)] + [[format_value(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class Metric:
    """One reported number: its ``task`` (a name of ``prototypes.TASKS``), the ``section`` of
    the metrics dict that holds it (dotted when nested: ``baselines.text_only``) and its
    ``name`` there."""

    task: str
    section: str
    name: str

    @property
    def key(self) -> str:
        """The metric's name everywhere: ``section.name`` (``grounding.P@0.5``)."""
        return f"{self.section}.{self.name}"


def _metrics(task: str, section: str, names: Sequence[str]) -> tuple[Metric, ...]:
    return tuple(Metric(task, section, name) for name in names)


_PQ = tuple(f"{k}{part}" for part in ("", "_things", "_stuff") for k in ("PQ", "SQ", "RQ"))
_AP = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCO's six (pycocotools' stats[0:6])
_MASKS = ("cIoU", "mIoU", "P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9")
_IR = ("IR@1", "IR@5", "IR@10")
_PARTS = ("things", "stuff")  # a mask task's entities scored apart by their segment's kind
_PART_MASKS = ("cIoU", "mIoU", "P@0.5")


def _parts(task: str, section: str, names: Sequence[str]) -> tuple[Metric, ...]:
    return tuple(m for part in _PARTS for m in _metrics(task, f"{section}.{part}", names))


#: Every metric a results table may show, in the order the tables list them (paper Tables
#: 3-4). Values are percentages, except ``NoC@t`` (clicks).
METRICS: tuple[Metric, ...] = (
    *_metrics("generic_segmentation", "panoptic", _PQ),
    *_metrics("generic_segmentation", "instance", _AP),  # masks
    *_metrics("generic_segmentation", "instance_bbox", _AP),  # boxes (``findvl eval`` only)
    *_metrics("generic_segmentation", "semantic", ("mIoU", "fwIoU", "pACC", "mACC")),
    *_metrics("grounded_segmentation", "grounding", _MASKS),
    *_parts("grounded_segmentation", "grounding", _PART_MASKS),
    *_metrics(
        "interactive_segmentation",
        "interactive",
        ("mIoU@1", "mIoU@3", "mIoU@5", "NoC@85", "NoC@90"),
    ),
    *_parts("interactive_segmentation", "interactive", ("mIoU@1", "mIoU@3", "mIoU@5")),
    *_metrics("image_text_retrieval", "retrieval", (*_IR, "TR@1", "TR@5", "TR@10")),
    *_metrics("interleave_segmentation", "interleave_segmentation", _MASKS),
    *_parts("interleave_segmentation", "interleave_segmentation", _PART_MASKS),
    *_metrics("interleave_segmentation", "interleave_grounding_long", _MASKS),  # zero-shot
    *_parts("interleave_segmentation", "interleave_grounding_long", _PART_MASKS),
    *_metrics("interleave_retrieval", "interleave_retrieval", _IR),
    *_metrics("interleave_retrieval", "interleave_retrieval_legend", _IR),  # legend text only
    *_metrics("interleave_retrieval", "baselines.text_only", _IR),
    *_metrics("interleave_retrieval", "baselines.embedding_average", _IR),
)


@dataclass(frozen=True)
class ResultRow:
    """One row of a results table.

    Attributes:
        task: the task, as named in ``model/tasks/``.
        metric: the metric's key in the metrics dict (:attr:`Metric.key`).
        value: the number (``None``: undefined, e.g. no ground truth).
        chance: the chance level or trivial baseline (``None``: not known).
    """

    task: str
    metric: str
    value: float | int | None
    chance: float | None = None


_MISSING = object()


def _section(metrics: Mapping, section: str) -> Any:
    """``metrics["a"]["b"]`` for ``"a.b"`` (``_MISSING`` when any level is absent)."""
    part: Any = metrics
    for key in section.split("."):
        if not isinstance(part, Mapping) or key not in part:
            return _MISSING
        part = part[key]
    return part


def lookup(metrics: Mapping, path: str) -> Any:
    """``metrics["a"]["b"]`` for ``"a.b"``; keys may hold dots themselves (``"P@0.5"``).

    ``None`` when there is no such entry.
    """
    if path in metrics:
        return metrics[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if isinstance(metrics.get(head), Mapping):
            found = lookup(metrics[head], ".".join(parts[i:]))
            if found is not None:
                return found
    return None


def result_rows(
    metrics: Mapping, chance: Mapping[str, float | None] | None = None
) -> list[ResultRow]:
    """The rows of ``metrics``: one per metric of :data:`METRICS` it holds, in that order.

    A metric is shown when its section holds its name, with ``None`` (undefined) too; other
    entries (counts such as ``num_images``, ``meta``, ``train``) are not rows. ``chance`` maps
    :attr:`Metric.key` to its chance level.
    """
    rows = []
    for m in METRICS:
        part = _section(metrics, m.section)
        if isinstance(part, Mapping) and m.name in part:
            level = None if chance is None else chance.get(m.key)
            rows.append(ResultRow(m.task, m.key, part[m.name], level))
    return rows


def _cells(rows: Sequence[ResultRow], with_chance: bool) -> tuple[list[str], list[list[Any]]]:
    headers = ["task", "metric", "value"] + (["chance"] if with_chance else [])
    cells = [[r.task, r.metric, r.value] + ([r.chance] if with_chance else []) for r in rows]
    return headers, cells


def rows_text(rows: Sequence[ResultRow], *, with_chance: bool = False) -> str:
    """``rows`` as an aligned text table (the command line); ``-`` = undefined / unknown."""
    return format_table(*_cells(rows, with_chance), left=2)


def rows_markdown(rows: Sequence[ResultRow], *, with_chance: bool = False) -> str:
    """``rows`` as one Markdown table (the reports), cells as in :func:`rows_text`."""
    headers, cells = _cells(rows, with_chance)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|---|---|" + "---:|" * (len(headers) - 2),
    ]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in cells]
    return "\n".join(lines)
