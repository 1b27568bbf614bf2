"""Interactive NoC and mIoU@k on hand-written IoU curves."""

from __future__ import annotations

import numpy as np
import pytest

from findvl.metrics.interactive import interactive_metrics, miou_at_clicks, number_of_clicks

CURVES = [
    [0.50, 0.80, 0.86, 0.91],  # NoC@85 = 3, NoC@90 = 4 (stopped after 4 clicks)
    [0.90],  # reaches both thresholds at the first click
    [0.10, 0.20, 0.30, 0.40, 0.50, 0.84] + [0.84] * 14,  # never reaches 0.85: counts as 20
]


def test_number_of_clicks():
    assert number_of_clicks(CURVES, 0.85).tolist() == [3, 1, 20]
    assert number_of_clicks(CURVES, 0.90).tolist() == [4, 1, 20]
    assert number_of_clicks([[0.85]], 0.85).tolist() == [1]  # threshold reached with >=


def test_miou_at_clicks_keeps_last_value_of_short_curves():
    assert miou_at_clicks(CURVES, 1) == pytest.approx((0.5 + 0.9 + 0.1) / 3)
    assert miou_at_clicks(CURVES, 5) == pytest.approx((0.91 + 0.9 + 0.5) / 3)


def test_summary_and_errors():
    result = interactive_metrics(CURVES)
    assert result.noc == {"NoC@85": pytest.approx(24 / 3), "NoC@90": pytest.approx(25 / 3)}
    assert result.miou_at["mIoU@3"] == pytest.approx(100 * (0.86 + 0.9 + 0.3) / 3)
    assert result.num_samples == 3
    with pytest.raises(ValueError, match="curve 0: IoU values must lie in"):
        interactive_metrics([[1.5]])
    with pytest.raises(ValueError, match="curve 0: expected 1 to 20"):
        interactive_metrics([np.ones(21) * 0.5])
    with pytest.raises(ValueError, match="no interactive samples"):
        interactive_metrics([])
