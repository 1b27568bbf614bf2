"""Interactive segmentation metrics from per-sample IoU-vs-click curves.

A curve holds the IoU after click 1, 2, ..., n (``n <= max_clicks``). ``NoC@t`` is the number
of clicks until the IoU first reaches ``t`` (``>=``), ``max_clicks`` for a sample that never
does; ``mIoU@k`` is the mean IoU after ``k`` clicks. A curve shorter than ``k`` (the session
stopped early) keeps its last IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from findvl.metrics.io import percent

MAX_CLICKS = 20


@dataclass(frozen=True)
class InteractiveMetrics:
    """``miou_at`` (percent, keyed ``"mIoU@k"``) and ``noc`` (clicks, keyed ``"NoC@85"``)."""

    miou_at: dict[str, float]
    noc: dict[str, float]
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pad_curves(curves: Sequence[Sequence[float]], max_clicks: int = MAX_CLICKS) -> np.ndarray:
    """``[N, max_clicks]`` IoUs; each curve is extended with its last value."""
    out = np.zeros((len(curves), max_clicks))
    for i, curve in enumerate(curves):
        values = np.asarray(curve, np.float64)
        if values.ndim != 1 or not 1 <= values.size <= max_clicks:
            raise ValueError(
                f"curve {i}: expected 1 to {max_clicks} IoU values, got {values.shape}"
            )
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"curve {i}: IoU values must lie in [0, 1]")
        out[i, : values.size] = values
        out[i, values.size :] = values[-1]
    return out


def number_of_clicks(
    curves: Sequence[Sequence[float]], threshold: float, max_clicks: int = MAX_CLICKS
) -> np.ndarray:
    """``[N]`` clicks needed to reach IoU ``>= threshold`` (``max_clicks`` if never)."""
    ious = pad_curves(curves, max_clicks)
    reached = ious >= threshold
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, max_clicks)


def miou_at_clicks(
    curves: Sequence[Sequence[float]], clicks: int, max_clicks: int = MAX_CLICKS
) -> float:
    """Mean IoU (fraction) after ``clicks`` clicks."""
    if not 1 <= clicks <= max_clicks:
        raise ValueError(f"clicks must be in [1, {max_clicks}], got {clicks}")
    return float(pad_curves(curves, max_clicks)[:, clicks - 1].mean())


def interactive_metrics(
    curves: Sequence[Sequence[float]],
    *,
    clicks: tuple[int, ...] = (1, 3, 5),
    thresholds: tuple[float, ...] = (0.85, 0.9),
    max_clicks: int = MAX_CLICKS,
) -> InteractiveMetrics:
    """mIoU@k for ``clicks`` and mean NoC@t for ``thresholds`` over all samples."""
    if not curves:
        raise ValueError("no interactive samples to evaluate")
    return InteractiveMetrics(
        miou_at={f"mIoU@{k}": percent(miou_at_clicks(curves, k, max_clicks)) for k in clicks},
        noc={
            f"NoC@{round(t * 100)}": float(number_of_clicks(curves, t, max_clicks).mean())
            for t in thresholds
        },
        num_samples=len(curves),
    )
