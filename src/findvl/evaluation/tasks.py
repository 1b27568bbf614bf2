"""The task families :func:`findvl.evaluation.runner.evaluate_run` can run (no heavy imports)."""

from __future__ import annotations

TASKS = ("generic", "grounding", "interactive", "retrieval", "interleave", "long", "baselines")
