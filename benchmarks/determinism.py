"""Two runs of the same quickstart training steps, without and with ``deterministic=true``.

    PYTHONPATH=src python benchmarks/determinism.py [--steps 8] [--threads 2]

Trains the quickstart's model and settings on a small generated split four times in one
process, alternating: without the flag, with it, without, with. Prints one JSON object: each
run's loss totals (6 decimals) and seconds per step, and for each setting the first step at
which its two runs differ (None: identical).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.quickstart import QUICKSTART_OVERRIDES
from findvl.train.config import train_config
from findvl.train.trainer import Trainer


def run(data: Path, out: Path, *, deterministic: bool, steps: int) -> dict:
    overrides = [*QUICKSTART_OVERRIDES, f'data.root="{data}"', "data.workers=0"]
    overrides.append(f"deterministic={str(deterministic).lower()}")
    torch.use_deterministic_algorithms(False)  # the flag is process-wide: start from off
    trainer = Trainer(train_config("find_synth", overrides, steps=steps), out, progress=False)
    start = time.perf_counter()
    totals = [round(trainer.train_step()["total"], 6) for _ in range(steps)]
    return {"totals": totals, "s_per_step": (time.perf_counter() - start) / steps}


def first_difference(a: list[float], b: list[float]) -> int | None:
    return next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="findvl-det-") as tmp:
        data = Path(tmp) / "data"
        write_synth(SynthConfig(out=data, images=64, seed=0, size=64), progress=False)
        runs = {}
        for k, flag in enumerate((False, True, False, True)):
            key = f"{'deterministic' if flag else 'default'}_{k // 2}"
            runs[key] = run(data, Path(tmp) / key, deterministic=flag, steps=args.steps)
    result = {
        "threads": args.threads,
        "runs": runs,
        "first_difference": {
            name: first_difference(runs[f"{name}_0"]["totals"], runs[f"{name}_1"]["totals"])
            for name in ("default", "deterministic")
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
