"""Bad inputs, part two: damaged checkpoints, hostile servers, two runs on one directory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from findvl.cli import main
from findvl.data.engine.client import ChatClient, RetryPolicy, TransientRequestError
from findvl.data.engine.prompt import MalformedReplyError, parse_caption
from findvl.data.engine.run import EngineConfig, process_image
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.encoders.markup import parse_markup
from findvl.runs import load_run
from findvl.train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from findvl.train.checkpoint_integrity import clean_interrupted_saves
from findvl.train.config import train_config
from findvl.train.run_lock import RunLock, RunLocked
from findvl.train.trainer import Trainer

OVERRIDES = ["model.interface.num_layers=1", 'loss={"num_points": 256}', "checkpoint_every=1"]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))


# --- checkpoints ------------------------------------------------------------------------------


def test_bit_rot_of_the_same_size_is_caught(tmp_path, capsys):
    first = save_checkpoint(tmp_path, step=1, model=_net(), keep_last=None)
    second = save_checkpoint(tmp_path, step=2, model=_net(), keep_last=None)
    weights = second / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x40  # one flipped bit inside a weight: same size, valid header
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors does not match its recorded SHA-256"):
        load_checkpoint(second, model=_net())
    assert find_latest(tmp_path) == first
    warning = capsys.readouterr().err
    assert str(second) in warning and str(first) in warning and "SHA-256" in warning


def test_truncated_latest_checkpoint_falls_back_loudly(tmp_path, capsys):
    first = save_checkpoint(tmp_path, step=1, model=_net(), keep_last=None)
    second = save_checkpoint(tmp_path, step=2, model=_net(), keep_last=None)
    data = (second / "model.safetensors").read_bytes()
    (second / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert find_latest(tmp_path) == first
    line = capsys.readouterr().err.strip()
    assert "step_00000002" in line and "step_00000001" in line and "wrong size" in line


def test_non_finite_weights_are_refused(tmp_path):
    net = _net()
    with torch.no_grad():
        net[1].weight[0, 3] = float("nan")
    path = save_checkpoint(tmp_path, step=1, model=net)
    with pytest.raises(ValueError, match=r"1\.weight holds NaN or infinite values"):
        load_checkpoint(path, model=_net())


def test_leftovers_of_killed_saves_are_cleaned(tmp_path):
    final = save_checkpoint(tmp_path, step=1, model=_net())
    (tmp_path / ".tmp-step_00000002-99999").mkdir()  # a save killed by another process
    shutil.copytree(final, tmp_path / ".old-step_00000003-99999")  # killed mid-replace
    removed = clean_interrupted_saves(tmp_path)
    assert [p.name for p in removed] == [".tmp-step_00000002-99999"]
    assert (tmp_path / "step_00000003").is_dir()  # the only copy of step 3 is restored
    assert not any(p.name.startswith((".tmp-", ".old-")) for p in tmp_path.iterdir())


# --- runs: resume, locks, paths from checkpoints ----------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(out=root, images=4, seed=4, size=64), progress=False)
    return root


def _config(dataset: Path, *extra: str, steps: int = 2):
    return train_config(
        "find_tiny", [f'data.root="{dataset}"', *OVERRIDES, *extra], steps=steps, batch_size=2
    )


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    Trainer(_config(dataset), run, progress=False).fit()
    return run


def test_reference_to_a_missing_segment_is_refused(dataset, tmp_path):
    from findvl.data.readers.dataset import load_dataset

    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    path = root / "annotations" / "entity_train.json"
    entity = json.loads(path.read_text())
    caption = entity["annotations"][0]
    caption["phrase"][0]["reference"] = {
        "image_id": caption["image_id"],
        "annotation_id": 99999,
        "prob": 0.9,
    }
    path.write_text(json.dumps(entity))
    with pytest.raises(ValueError, match=r"phrase\[0\]\.reference\.annotation_id: 99999"):
        load_dataset(root, "train")


def test_resume_may_extend_steps_and_names_other_keys(dataset, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / ".tmp-step_00000002-12345").mkdir()  # left by a killed save
    longer = Trainer(_config(dataset, steps=3), run, progress=False)
    assert longer.resume() and longer.step == 2
    assert not (run / ".tmp-step_00000002-12345").exists()
    assert longer.fit()["steps"] == 3
    other = Trainer(_config(dataset, "optim.lr=0.5", steps=4), run, progress=False)
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.0001 -> 0\.5"):
        other.resume()


def test_second_writer_of_a_run_directory_is_refused(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom findvl.train.run_lock import RunLock\n"
            f"lock = RunLock({str(run)!r})\nlock.acquire()\nprint('held', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            RunLock(run).acquire()
        argv = ["train", "--data", str(dataset), "--out", str(run), "--steps", "1"]
        argv += ["--no-progress"] + [f"--set={o}" for o in OVERRIDES]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "another training run" in err
        assert not (run / "train.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(run)  # released with the process that held it
    lock.acquire()
    lock.release()


def test_a_killed_writers_forked_children_do_not_keep_its_lock(tmp_path):
    """DataLoader workers are forked from the training process and outlive it for a few
    seconds when it is killed: the run directory must be free as soon as the writer is gone.
    Within one process a second holder is refused too."""
    run = tmp_path / "run"
    code = (
        "import os, sys, time\nfrom findvl.train.run_lock import RunLock\n"
        f"lock = RunLock({str(run)!r})\nlock.acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n    time.sleep(60)\n    os._exit(0)\n"
        "print(child, flush=True)\ntime.sleep(60)"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(writer.stdout.readline())
    try:
        with pytest.raises(RunLocked, match=f"pid {writer.pid}"):
            RunLock(run).acquire()
        writer.kill()
        writer.wait()
        os.kill(child, 0)  # the forked child still runs
        lock = RunLock(run)
        lock.acquire()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            RunLock(run).acquire()
        lock.release()
        RunLock(run).acquire()
    finally:
        os.kill(child, signal.SIGKILL)


def _rewrite_model_config(ckpt: Path, edit) -> None:
    """Edit a checkpoint's config.json and record its new size and hash, as a crafted
    checkpoint would."""
    from findvl.train.checkpoint_integrity import file_sha256

    config = json.loads((ckpt / "config.json").read_text())
    edit(config)
    (ckpt / "config.json").write_text(json.dumps(config))
    state = json.loads((ckpt / "state.json").read_text())
    state["files"]["config.json"] = (ckpt / "config.json").stat().st_size
    state["hashes"]["config.json"] = file_sha256(ckpt / "config.json")
    (ckpt / "state.json").write_text(json.dumps(state))


def test_paths_in_a_checkpoint_cannot_point_elsewhere(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    ckpt = find_latest(run)
    _rewrite_model_config(
        ckpt, lambda c: c["language"].update(cache_dir=str(tmp_path / "elsewhere"))
    )
    loaded = load_run(run)
    assert loaded.config.language.cache_dir is None
    _rewrite_model_config(ckpt, lambda c: c["vision"].update(path="/etc"))
    with pytest.raises(ValueError, match="--vision-path"):
        load_run(run)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory_is_one_line(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        argv = ["train", "--data", str(tmp_path), "--out", str(out / "run")]
        assert main(argv) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        out.chmod(0o700)


# --- servers ----------------------------------------------------------------------------------


class _Server:
    """A local HTTP server answering every POST with ``respond(handler)``."""

    def __init__(self, respond) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    respond(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _drip(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(1000):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.1)


def _headers(handler, body: bytes, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        (_drip, "timeout: no complete reply within 1.0s"),
        (lambda h: _headers(h, b'{"choices": [{"message": {"content": "\xff\xfe"}}]}'), "not JSON"),
        (lambda h: _headers(h, b'{"choices": [', length=500), "connection error"),
    ],
    ids=["drip", "non-utf8", "incomplete-read"],
)
def test_hostile_server_fails_one_request_within_the_timeout(respond, message):
    server = _Server(respond)
    try:
        client = ChatClient(endpoint=server.url, model="m", timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(TransientRequestError, match=message):
            client.complete([{"role": "user", "content": "hi"}])
        assert time.monotonic() - start < 3.0
    finally:
        server.close()


def test_undecodable_reply_fails_the_image_not_the_run(tmp_path):
    from findvl.data.engine.inputs import EngineImage, EngineSegment

    class Backend:
        def complete(self, messages):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    segment = EngineSegment(id=1, category="dog", bbox=(0.0, 0.0, 4.0, 4.0))
    image = EngineImage(
        image_id=1, file_name="1.png", width=8, height=8, captions=("a dog",), segments=(segment,)
    )
    config = EngineConfig(
        out=tmp_path / "o.json",
        split="val",
        model="m",
        retry=RetryPolicy(retries=1, base_delay_s=0.0),
    )
    record = process_image(image, client=Backend(), config=config)
    assert record.error is not None and "unreadable reply" in record.error


@pytest.mark.parametrize("line", ["(1)<a [dog]> runs", "(1)<a dog> runs [fast]", "a ] (1)<dog>"])
def test_brackets_in_replies_never_reach_sentence_raw(line):
    with pytest.raises(MalformedReplyError, match=r"'\[' or '\]'|stray"):
        parse_caption(line, valid_ids={1})
    good = parse_caption("(1)<a dog> runs (fast)", valid_ids={1})
    assert parse_markup(good.sentence_raw).text == good.sentence


class _Code:
    """Pickles as a call of ``os.getcwd`` (harmless, but code, not tensors)."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickled_weights_with_code_are_refused_in_one_line(tmp_path, capsys):
    model = tmp_path / "dinov2"
    model.mkdir()
    config = {"model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32,
              "patch_size": 8}  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    torch.save({"x": _Code()}, model / "pytorch_model.bin")
    code = main(["info", "--vision", str(model), "--language", "tiny", "--json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "refused a pickled weights file" in err and "getcwd" in err


@pytest.mark.parametrize(
    ("path", "trusted"),
    [
        ("findvl:synth-clip-vision", True),
        ("findvl:resnet/synth-clip-vision", True),  # a shipped pair in its own folder
        ("findvl:../../etc", False),
        ("findvl:resnet/../../x", False),
        ("findvl:", False),
        ("/etc", False),
    ],
)
def test_shipped_names_may_have_subfolders_but_never_leave_the_package(path, trusted, tmp_path):
    from findvl.runs import _trusted_path

    ckpt = tmp_path / "run" / "step_00000001"
    if trusted:
        assert _trusted_path(path, "model.vision.path", ckpt, None) == path
    else:
        with pytest.raises(ValueError, match="--vision-path"):
            _trusted_path(path, "model.vision.path", ckpt, None)
