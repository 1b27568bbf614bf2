"""Training logs: a JSON-lines file, a tqdm progress bar and a throughput meter."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from findvl.train.distributed import is_main


def _plain(value: Any, key: str) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"log field {key!r} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible as strings
    return value


class JsonlLogger:
    """Append one JSON object per line to ``path``, flushed per line; rank 0 only.

    Args:
        path: log file (parent created; appended to, so a resumed run continues the file).
        enabled: write at all; defaults to :func:`findvl.train.distributed.is_main`.
    """

    def __init__(self, path: str | Path, *, enabled: bool | None = None) -> None:
        self.path = Path(path)
        self.enabled = is_main() if enabled is None else enabled
        self._file = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def log(self, **fields: Any) -> None:
        """Write ``fields`` (numbers, strings, scalar tensors) as one line with a timestamp."""
        if self._file is None:
            return
        record = {"time": round(time.time(), 3)}
        record.update({k: _plain(v, k) for k, v in fields.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file (further :meth:`log` calls are ignored)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines log; a malformed line raises ``ValueError`` naming it."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON: {err}") from err
    return records


def progress_bar(
    total: int, *, initial: int = 0, desc: str = "train", enabled: bool | None = None
) -> tqdm:
    """A tqdm bar on stderr showing steps, it/s and ETA; set the loss with
    ``bar.set_postfix(loss=...)``. Disabled on non-main ranks by default."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not (is_main() if enabled is None else enabled),
    )


class ThroughputMeter:
    """Items per second over a sliding window of recent updates.

    Args:
        window: number of recent updates the rate is computed over.
    """

    def __init__(self, *, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._marks: deque[tuple[float, int]] = deque(maxlen=window + 1)
        self.total = 0
        self._marks.append((time.perf_counter(), 0))

    def update(self, count: int) -> None:
        """Record that ``count`` more items (images, samples) were processed."""
        self.total += count
        self._marks.append((time.perf_counter(), self.total))

    @property
    def rate(self) -> float:
        """Items per second over the window (0 before the first update)."""
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
