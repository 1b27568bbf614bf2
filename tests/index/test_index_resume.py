"""A build killed with SIGKILL and resumed ends with exactly the uninterrupted build's index."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _build(root: Path, out: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "findvl", "index", "build", "--checkpoint", str(root / "run")]
    argv += ["--images", str(root / "images"), "--out", str(out), "--batch-size", "2"]
    return subprocess.Popen(
        [*argv, "--no-progress", "--threads", "1", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _batches(log: Path) -> int:
    if not log.is_file():
        return 0
    return sum('"batch"' in line for line in log.read_text().splitlines())


@pytest.mark.slow  # three `findvl index build` processes
def test_sigkill_then_resume_gives_the_uninterrupted_index(
    tmp_path, tiny_run, image_folder, tree_bytes, cli_env
) -> None:
    tiny_run(tmp_path / "run")
    image_folder(tmp_path / "images", 24, side=96)
    reference = _build(tmp_path, tmp_path / "reference", cli_env)
    victim = _build(tmp_path, tmp_path / "killed", cli_env)
    log = tmp_path / "killed" / "build.jsonl"
    deadline = time.monotonic() + 120
    while _batches(log) < 2 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "the build ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    done = len(list((tmp_path / "killed" / "shards").glob("*.json")))  # committed batches
    assert 2 <= done < 12
    assert not (tmp_path / "killed" / "ann").exists()  # killed before the first stage was built
    resumed = _build(tmp_path, tmp_path / "killed", cli_env, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    summary = json.loads(out)
    assert summary["total"] == 24 and summary["added"] == 24 - 2 * done
    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    killed, expected = tree_bytes(tmp_path / "killed"), tree_bytes(tmp_path / "reference")
    assert killed.keys() == expected.keys()
    assert [k for k in expected if killed[k] != expected[k]] == []  # byte for byte
