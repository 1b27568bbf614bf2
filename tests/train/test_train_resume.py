"""A run killed with SIGKILL and resumed with ``--resume`` repeats an uninterrupted run exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.checkpoint import find_latest
from findvl.train.logging import read_jsonl

STEPS = 5


def train_cmd(data: Path, out: Path, flags: list[str], *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "findvl", "train", "--data", str(data), "--out", str(out),
        "--steps", str(STEPS), "--batch-size", "2", "--seed", "3", "--no-progress", *flags, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(out=root, images=8, seed=0, size=64), progress=False)
    return root


def _logged_step(run: Path) -> int:
    try:
        records = read_jsonl(run / "train.jsonl")
    except (FileNotFoundError, ValueError):  # not there yet, or a line half written
        return 0
    return max((r["step"] for r in records), default=0)


def _kill_after(proc: subprocess.Popen, run: Path, *, step: int, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once it has logged ``step`` and saved a checkpoint before it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended before it could be killed: {proc.stderr.read()}")
        if _logged_step(run) >= step and find_latest(run) is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no progress past step {step} within {timeout}s")


LOSS_KEYS = ("total", "class_ce", "mask_bce", "grounding_ce", "interactive_dice", "retrieval")


@pytest.mark.slow  # three `findvl train` processes
def test_killed_and_resumed_run_matches_uninterrupted(
    dataset: Path, tmp_path: Path, cli_env, tiny_train_flags
) -> None:
    env, flags = cli_env, tiny_train_flags
    ref_run, run = tmp_path / "ref", tmp_path / "killed"
    ref = subprocess.Popen(
        train_cmd(dataset, ref_run, flags), env=env, stderr=subprocess.PIPE, text=True
    )
    victim = subprocess.Popen(
        train_cmd(dataset, run, flags), env=env, stderr=subprocess.PIPE, text=True
    )
    _kill_after(victim, run, step=3)
    assert victim.returncode == -signal.SIGKILL
    killed_at = _logged_step(run)
    assert killed_at < STEPS, "the run finished before the kill"
    resumed = subprocess.run(
        train_cmd(dataset, run, flags, "--resume"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    _, ref_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_err

    expected, got = read_jsonl(ref_run / "train.jsonl"), read_jsonl(run / "train.jsonl")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))  # redone steps not duplicated
    assert [r["step"] for r in expected] == list(range(1, STEPS + 1))
    for a, b in zip(expected, got):
        for key in LOSS_KEYS + ("lr",):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), (a["step"], key)
    final_ref = load_file(str(ref_run / "step_00000005" / "model.safetensors"))
    final = load_file(str(run / "step_00000005" / "model.safetensors"))
    assert final_ref.keys() == final.keys()
    for name in final_ref:
        torch.testing.assert_close(final[name], final_ref[name], rtol=0, atol=1e-6, msg=name)
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["parameter_checksum"]
        == json.loads((ref_run / "summary.json").read_text())["parameter_checksum"]
    )
