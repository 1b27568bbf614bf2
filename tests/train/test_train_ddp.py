"""Two gloo processes under torchrun: identical parameters, rank-0-only files, global InfoNCE."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from findvl.data.synth.write import SynthConfig, write_synth
from findvl.runs import load_run
from findvl.train.logging import read_jsonl
from findvl.train.trainer import parameter_checksum

pytestmark = pytest.mark.slow  # a torchrun of two training processes, over 20 s

STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summaries(stdout: str) -> list[dict]:
    """The one-line JSON summary each rank prints (torchrun may prefix lines)."""
    found = []
    for line in stdout.splitlines():
        if "parameter_checksum" in line:
            found.append(json.loads(line[line.index("{") :]))
    return found


@pytest.fixture(scope="module")
def ddp_run(
    tmp_path_factory, cli_env, tiny_train_flags
) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("ddp")
    data, run = root / "data", root / "run"
    write_synth(SynthConfig(out=data, images=8, seed=1, size=64), progress=False)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={_free_port()}", "--master_addr=127.0.0.1",
        "-m", "findvl", "train", "--data", str(data), "--out", str(run),
        "--steps", str(STEPS), "--batch-size", "1", "--no-progress", *tiny_train_flags,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return run, done


def test_ranks_end_with_identical_parameters(ddp_run) -> None:
    run, done = ddp_run
    summaries = _summaries(done.stdout)
    assert sorted(s["rank"] for s in summaries) == [0, 1]
    assert summaries[0]["parameter_checksum"] == summaries[1]["parameter_checksum"]
    # ... and equal to the parameters rank 0 saved
    assert parameter_checksum(load_run(run).model) == summaries[0]["parameter_checksum"]


def test_only_rank_zero_logs_and_saves(ddp_run) -> None:
    run, _ = ddp_run
    assert [r["step"] for r in read_jsonl(run / "train.jsonl")] == list(range(1, STEPS + 1))
    assert sorted(p.name for p in run.glob("step_*")) == [f"step_{s:08d}" for s in (2, 3)]
    assert not list(run.glob(".tmp-*"))
    assert json.loads((run / "summary.json").read_text())["rank"] == 0


def test_infonce_negatives_come_from_both_ranks(ddp_run) -> None:
    # With one image per process, a local InfoNCE has no negative and is exactly 0; gathered
    # over 2 processes every layer's term is about log(2).
    run, _ = ddp_run
    first = read_jsonl(run / "train.jsonl")[0]
    assert first["retrieval"] > 0.3
