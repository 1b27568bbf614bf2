"""Seeded ablation of the quickstart: variants of its settings, each at several seeds.

    python benchmarks/ablate.py --out DIR --seeds 0 1 \\
        --variant base= \\
        --variant cosine='--set optim.schedule="cosine"' \\
        [--steps 1200] [--threads 1] [--parallel 2] [--train-images 3000 --val-images 100]

One quickstart (``findvl quickstart``) per variant and seed, in ``DIR/NAME-sSEED``; a seed's
world (``--seed`` sets both the world and the initialisation) is generated once, in
``DIR/world-sSEED``, and copied into each of its runs. The text after ``NAME=`` is passed to
the quickstart as it is (split like a shell would). ``--parallel`` runs that many
quickstarts side by side, each on ``--threads`` threads (two one-thread runs use the two cores
best). A run whose ``metrics.json`` exists is not run again, so an interrupted ablation resumes.

Prints one table: per variant the mean over seeds of every metric the issue's targets name,
and the range over seeds (the quickstart's seed alone moves PQ by several points, so an
effect smaller than the range is not resolved). ``DIR/ablation.jsonl`` keeps one line per run
(variant, seed, arguments, metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from findvl.quickstart import QuickstartConfig, make_world

METRICS = (
    ("PQ", "panoptic.PQ"),
    ("PQ_th", "panoptic.PQ_things"),
    ("AP", "instance.AP"),
    ("mIoU", "semantic.mIoU"),
    ("ground", "grounding.cIoU"),
    ("inter@1", "interactive.mIoU@1"),
    ("inter@5", "interactive.mIoU@5"),
    ("IR@1", "retrieval.IR@1"),
    ("TR@1", "retrieval.TR@1"),
    ("ilv_seg", "interleave_segmentation.cIoU"),
    ("ilv_IR@5", "interleave_retrieval.IR@5"),
    ("para", "interleave_grounding_long.cIoU"),
    ("minutes", "train.minutes"),
)


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    args: tuple[str, ...]
    out: Path


def _variant(text: str) -> tuple[str, tuple[str, ...]]:
    name, sep, args = text.partition("=")
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=ARGS")
    return name, tuple(shlex.split(args))


def _lookup(metrics: dict, dotted: str) -> float | None:
    value = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)


def _world(out: Path, seed: int, train_images: int, val_images: int) -> Path:
    world = out / f"world-s{seed}"
    config = QuickstartConfig(
        out=world, seed=seed, train_images=train_images, val_images=val_images
    )
    make_world(config, progress=False)
    return world / "data"


def _start(run: Run, world: Path, options: argparse.Namespace) -> subprocess.Popen:
    if not (run.out / "data").exists():
        shutil.copytree(world, run.out / "data")
    command = [sys.executable, "-m", "findvl", "quickstart", "--out", str(run.out)]
    command += ["--seed", str(run.seed), "--no-progress"]
    command += ["--train-images", str(options.train_images)]
    command += ["--val-images", str(options.val_images)]
    command += ["--steps", str(options.steps)] if options.steps else []
    command += list(run.args)
    threads = str(options.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with open(run.out.with_suffix(".log"), "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _table(results: dict[str, list[dict]]) -> str:
    header = "| variant | seeds | " + " | ".join(n for n, _ in METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 2)]
    for name, runs in results.items():
        cells = []
        for _, key in METRICS:
            values = [v for v in (_lookup(m, key) for m in runs) if v is not None]
            if not values:
                cells.append("-")
                continue
            mean = sum(values) / len(values)
            spread = max(values) - min(values)
            cells.append(f"{mean:.1f}" + (f" ±{spread / 2:.1f}" if len(values) > 1 else ""))
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variant", type=_variant, action="append", required=True)
    parser.add_argument("--steps", type=int, default=None, help="default: the quickstart's")
    parser.add_argument("--train-images", type=int, default=QuickstartConfig.train_images)
    parser.add_argument("--val-images", type=int, default=QuickstartConfig.val_images)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    names = [n for n, _ in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"--variant: names must differ, got {names}")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [
        Run(name, seed, extra, args.out / f"{name}-s{seed}")
        for seed in args.seeds
        for name, extra in args.variant
    ]
    todo = [r for r in runs if not (r.out / "metrics.json").exists()]
    seeds = sorted({r.seed for r in todo})
    worlds = {s: _world(args.out, s, args.train_images, args.val_images) for s in seeds}
    running: list[tuple[Run, subprocess.Popen]] = []
    failed = []
    while todo or running:
        while todo and len(running) < args.parallel:
            run = todo.pop(0)
            print(f"start {run.out.name}", flush=True)
            running.append((run, _start(run, worlds[run.seed], args)))
        time.sleep(2)
        for run, proc in list(running):
            if proc.poll() is None:
                continue
            running.remove((run, proc))
            print(f"done {run.out.name}: exit {proc.returncode}", flush=True)
            if proc.returncode != 0:
                failed.append(run)
    results: dict[str, list[dict]] = {name: [] for name in names}
    with open(args.out / "ablation.jsonl", "w") as log:
        for run in runs:
            path = run.out / "metrics.json"
            if not path.exists():
                continue
            metrics = json.loads(path.read_text())
            results[run.variant].append(metrics)
            line = {"variant": run.variant, "seed": run.seed, "args": list(run.args)}
            log.write(json.dumps({**line, "metrics": metrics}) + "\n")
    print(_table(results))
    for run in failed:
        print(f"failed: {run.out.name} (log {run.out.with_suffix('.log')})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
