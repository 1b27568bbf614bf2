"""Tests of the FIND-Bench data engine against a scripted chat server on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from findvl.cli import data_engine as engine_cli
from findvl.data.engine.client import ChatClient, RetryPolicy, TransientRequestError
from findvl.data.engine.inputs import load_engine_images
from findvl.data.engine.progress import load_progress
from findvl.data.engine.prompt import (
    SYSTEM_PROMPT,
    USER_TEMPLATE,
    MalformedReplyError,
    parse_caption,
    parse_reply,
)
from findvl.data.engine.run import EngineConfig, run_engine

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data_engine.md"
REGION_LINE = re.compile(r"^(\d+): ", re.MULTILINE)


@dataclass(frozen=True)
class Reply:
    """One scripted server answer: an HTTP status, the message content, and a delay."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0


class ScriptedLLM:
    """An OpenAI-compatible server whose replies are scripted per image.

    The image is recognised from the first region id in the prompt (ids are ``100*image + k``).
    Each image's script is consumed in order; its last reply repeats.
    """

    def __init__(self, scripts: dict[int, list[Reply]], *, hold_s: float = 0.0) -> None:
        self.scripts = scripts
        self.hold_s = hold_s
        self.calls: Counter[int] = Counter()
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.bodies.clear()
            self.max_in_flight = 0

    def next_reply(self, body: dict) -> Reply:
        image_id = int(REGION_LINE.search(body["messages"][1]["content"]).group(1)) // 100
        with self.lock:
            script = self.scripts[image_id]
            reply = script[min(self.calls[image_id], len(script) - 1)]
            self.calls[image_id] += 1
            self.bodies.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                assert self.path == "/v1/chat/completions"
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = llm.next_reply(body)
                try:
                    # Readable before the delay ends = the client hung up (timed out).
                    ready, _, _ = select.select(
                        [self.connection], [], [], reply.delay_s + llm.hold_s
                    )
                    if ready:
                        return
                    payload = {
                        "choices": [{"message": {"role": "assistant", "content": reply.content}}]
                    }
                    data = json.dumps(payload if reply.status == 200 else {"error": "scripted"})
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data.encode())))
                    self.end_headers()
                    self.wfile.write(data.encode())
                finally:
                    with llm.lock:
                        llm.in_flight -= 1

        return Handler


SCRIPTS = {
    1: [Reply("(101)<Un chien brun 🐕> lies on (102)<the grass>, next to (101)<the dog's bowl>.")],
    2: [
        Reply("(201)<a cat (202)<on a mat>>"),
        Reply("(201)<A grey cat> sits on (202)<a red mat>."),
    ],
    3: [Reply("(301)<A man> flies (999)<a kite> above (302)<the beach>.")],
    4: [Reply("(401)<too late>", delay_s=3.0), Reply("(401)<A bus> on (402)<the road>.")],
    5: [Reply(status=500), Reply("(501)<A pizza> on (502)<a plate>.")],
    6: [Reply(status=400)],
}


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM(SCRIPTS, hold_s=0.05)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


def write_coco(root: Path, n_images: int = 6, split: str = "val") -> Path:
    """A tiny COCO-style split: image i has segments 100*i+1 (dog) and 100*i+2 (grass)."""
    categories = [{"id": 1, "name": "dog", "isthing": 1}, {"id": 2, "name": "grass", "isthing": 0}]
    images, panoptic, captions = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480})
        segments = [
            {
                "id": 100 * i + 1,
                "category_id": 1,
                "bbox": [10, 20, 30, 40],
                "area": 1,
                "iscrowd": 0,
            },
            {
                "id": 100 * i + 2,
                "category_id": 2,
                "bbox": [0, 200, 640, 280],
                "area": 1,
                "iscrowd": 0,
            },
        ]
        panoptic.append({"image_id": i, "file_name": f"{i:012d}.png", "segments_info": segments})
        captions.append({"id": i, "image_id": i, "caption": f"Caption number {i}."})
    ann = root / "annotations"
    ann.mkdir(parents=True)
    pan = {"images": images, "annotations": panoptic, "categories": categories}
    (ann / f"panoptic_{split}.json").write_text(json.dumps(pan))
    (ann / f"captions_{split}.json").write_text(
        json.dumps({"images": images, "annotations": captions})
    )
    return root


def make_config(out: Path, **overrides: object) -> EngineConfig:
    settings = {"out": out, "split": "val", "model": "scripted", "concurrency": 2}
    settings["retry"] = RetryPolicy(retries=2, base_delay_s=0.02)
    settings.update(overrides)
    return EngineConfig(**settings)


def run_scripted(llm: ScriptedLLM, data: Path, out: Path, **overrides: object):
    client = ChatClient(endpoint=llm.url, model="scripted", timeout_s=0.5)
    images = load_engine_images(data, "val")
    return run_engine(images, config=make_config(out, **overrides), client=client)


def check_offsets(annotation: dict) -> None:
    for phrase in annotation["phrase"]:
        assert annotation["sentence"][phrase["start_idx"] : phrase["end_idx"]] == phrase["phrase"]
        markup = f"[{phrase['annotation_id']}]<{phrase['phrase']}>"
        assert annotation["sentence_raw"][phrase["_start_idx"] :].startswith(markup)


def test_engine_against_scripted_server(llm: ScriptedLLM, tmp_path: Path) -> None:
    data = write_coco(tmp_path / "coco")
    out = tmp_path / "entity_val.json"
    summary = run_scripted(llm, data, out)
    result = json.loads(out.read_text(encoding="utf-8"))

    assert [im["id"] for im in result["images"]] == [1, 2, 3, 4, 5]
    assert [a["id"] for a in result["annotations"]] == [1, 2, 3, 4, 5]
    for annotation in result["annotations"]:
        check_offsets(annotation)
    first = result["annotations"][0]
    assert first["sentence"] == "Un chien brun 🐕 lies on the grass, next to the dog's bowl."
    assert [p["annotation_id"] for p in first["phrase"]] == [101, 102, 101]
    kite = result["annotations"][2]
    assert kite["sentence"] == "A man flies a kite above the beach."
    assert "[999]" not in kite["sentence_raw"] and "flies a kite above" in kite["sentence_raw"]
    assert [p["annotation_id"] for p in kite["phrase"]] == [301, 302]

    assert llm.calls == Counter({1: 1, 2: 2, 3: 1, 4: 2, 5: 2, 6: 1})
    assert llm.max_in_flight <= 2
    assert all(b["model"] == "scripted" and "temperature" in b for b in llm.bodies)
    assert (summary.images_done, summary.images_failed) == (5, 1)
    assert (summary.retries, summary.malformed_replies, summary.unknown_ids_dropped) == (3, 1, 1)
    assert summary.phrases_kept == sum(len(a["phrase"]) for a in result["annotations"])
    saved = json.loads(Path(f"{out}.summary.json").read_text())
    assert saved["images_failed"] == 1 and saved["retries"] == 3
    failed = load_progress(Path(f"{out}.progress.jsonl"), header=make_config(out).header())[6]
    assert "HTTP 400" in failed.error and failed.retries == 0


def test_concurrency_bound(tmp_path: Path) -> None:
    scripts = {
        i: [Reply(f"({100 * i + 1})<A dog> on ({100 * i + 2})<grass>.")] for i in range(1, 7)
    }
    server = ScriptedLLM(scripts, hold_s=0.15)
    server.thread.start()
    try:
        data = write_coco(tmp_path / "coco")
        summary = run_scripted(server, data, tmp_path / "out.json", concurrency=3)
    finally:
        server.server.shutdown()
        server.server.server_close()
    assert summary.images_done == 6
    assert server.max_in_flight == 3


def test_resume_gives_the_same_file(llm: ScriptedLLM, tmp_path: Path) -> None:
    data = write_coco(tmp_path / "coco")
    whole = tmp_path / "whole.json"
    run_scripted(llm, data, whole)

    llm.reset()
    out = tmp_path / "resumed.json"
    first = run_scripted(llm, data, out, limit=2)
    assert (first.images_processed, first.images_pending) == (2, 4)
    progress = Path(f"{out}.progress.jsonl")
    with progress.open("a", encoding="utf-8") as handle:
        handle.write('{"image_id": 3, "captions": [{"sent')  # a torn append
    second = run_scripted(llm, data, out)
    assert (second.images_skipped, second.images_processed) == (2, 4)
    assert out.read_bytes() == whole.read_bytes()
    lines = [json.loads(line) for line in progress.read_text(encoding="utf-8").splitlines()]
    assert sorted(line["image_id"] for line in lines[1:]) == [1, 2, 3, 4, 5, 6]

    third = run_scripted(llm, data, out)  # nothing left: the output is rebuilt unchanged
    assert (third.images_skipped, third.images_processed) == (6, 0)
    assert out.read_bytes() == whole.read_bytes()


class CrashingBackend:
    """Answers like the scripted server's first valid replies, then raises after ``n`` calls."""

    def __init__(self, crash_after: int | None) -> None:
        self.crash_after = crash_after
        self.calls = 0
        self.lock = threading.Lock()

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        with self.lock:
            self.calls += 1
            if self.crash_after is not None and self.calls > self.crash_after:
                raise RuntimeError("process killed")
        ids = [int(m) for m in REGION_LINE.findall(messages[1]["content"])]
        return f"({ids[0]})<A dog> runs over ({ids[1]})<the grass> to ({ids[0]})<its owner>."


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    images = load_engine_images(write_coco(tmp_path / "coco"), "val")
    whole, out = tmp_path / "whole.json", tmp_path / "out.json"
    run_engine(images, config=make_config(whole), client=CrashingBackend(None))
    with pytest.raises(RuntimeError, match="killed"):
        run_engine(images, config=make_config(out, concurrency=1), client=CrashingBackend(3))
    assert not out.exists()
    done = load_progress(Path(f"{out}.progress.jsonl"), header=make_config(out).header())
    assert sorted(done) == [1, 2, 3]
    summary = run_engine(images, config=make_config(out), client=CrashingBackend(None))
    assert (summary.images_skipped, summary.images_processed, summary.images_done) == (3, 3, 6)
    assert out.read_bytes() == whole.read_bytes()


KILLABLE_RUN = """
import sys
from pathlib import Path
from findvl.data.engine.run import EngineConfig, run_engine
from findvl.data.engine.client import ChatClient, RetryPolicy
from findvl.data.engine.inputs import load_engine_images
data, out, url = sys.argv[1:]
config = EngineConfig(out=Path(out), split="val", model="scripted", concurrency=1,
                      retry=RetryPolicy(retries=2, base_delay_s=0.02))
client = ChatClient(endpoint=url, model="scripted", timeout_s=5.0)
run_engine(load_engine_images(Path(data), "val"), config=config, client=client)
"""


def test_killed_process_resumes(tmp_path: Path, cli_env) -> None:
    scripts = {
        i: [Reply(f"({100 * i + 1})<A dog> near ({100 * i + 2})<grass>.")] for i in range(1, 7)
    }
    server = ScriptedLLM(scripts, hold_s=0.2)
    server.thread.start()
    try:
        data = write_coco(tmp_path / "coco")
        whole, out = tmp_path / "whole.json", tmp_path / "out.json"
        run_scripted(server, data, whole)
        progress = Path(f"{out}.progress.jsonl")
        env = cli_env
        command = [sys.executable, "-c", KILLABLE_RUN, str(data), str(out), server.url]
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if progress.exists() and progress.read_text().count("\n") >= 3:  # header + 2 images
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        assert not out.exists()
        summary = run_scripted(server, data, out)
    finally:
        server.server.shutdown()
        server.server.server_close()
    assert 2 <= summary.images_skipped < 6
    assert summary.images_skipped + summary.images_processed == 6
    assert out.read_bytes() == whole.read_bytes()


def test_progress_of_other_settings_is_refused(tmp_path: Path) -> None:
    images = load_engine_images(write_coco(tmp_path / "coco", n_images=2), "val")
    out = tmp_path / "out.json"
    run_engine(images, config=make_config(out), client=CrashingBackend(None))
    with pytest.raises(ValueError, match="progress.jsonl"):
        run_engine(images, config=make_config(out, model="other"), client=CrashingBackend(None))
    progress = Path(f"{out}.progress.jsonl")
    lines = progress.read_text().splitlines()
    progress.write_text("\n".join([lines[0], "{broken", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        run_engine(images, config=make_config(out), client=CrashingBackend(None))


def test_cli_run_and_dry_run(llm: ScriptedLLM, tmp_path: Path) -> None:
    data = write_coco(tmp_path / "coco", n_images=1)
    parser = argparse.ArgumentParser()
    engine_cli.register(parser)
    common = ["--data", str(data), "--split", "val", "--model", "scripted"]
    prompts = tmp_path / "prompts.jsonl"
    args = parser.parse_args(
        [*common, "--llm-endpoint", "http://127.0.0.1:9/v1", "--dry-run"] + ["--out", str(prompts)]
    )
    assert args.func(args) == 0
    (line,) = prompts.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["image_id"] == 1 and record["messages"][0]["content"] == SYSTEM_PROMPT
    assert "101: dog, box (10, 20, 30, 40)" in record["messages"][1]["content"]
    assert "Caption number 1." in record["messages"][1]["content"]
    assert sum(llm.calls.values()) == 0

    out = tmp_path / "entity.json"
    args = parser.parse_args([*common, "--llm-endpoint", llm.url, "--out", str(out)])
    assert args.func(args) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["annotations"][0]["image_id"] == 1


def test_client_timeout_is_transient(llm: ScriptedLLM, tmp_path: Path) -> None:
    data = write_coco(tmp_path / "coco", n_images=4)
    from findvl.data.engine.run import image_messages

    messages = image_messages(load_engine_images(data, "val")[3])
    client = ChatClient(endpoint=llm.url, model="scripted", timeout_s=0.3)
    with pytest.raises(TransientRequestError, match="timeout"):
        client.complete(messages)


@pytest.mark.parametrize(
    "line",
    [
        "(1)<a cat (2)<on a mat>>",  # nested
        "(1)<a cat on a mat",  # unclosed
        "(1)<a cat> on a mat>",  # stray close
        "a cat < a dog (1)<here>",  # stray open
        "(1)<   > sits",  # empty phrase
        "(x)<a cat> sits",  # non-integer id
        "(1.5)<a cat> sits",
        "(-1)<a cat> sits",
        "(entity_id)<a cat> sits",
        "A cat sits on a mat.",  # no mention
    ],
)
def test_malformed_markup(line: str) -> None:
    with pytest.raises(MalformedReplyError):
        parse_caption(line, valid_ids={1, 2})


def test_parse_every_occurrence_and_offsets() -> None:
    caption = parse_caption(
        "Café (brown) (7)< ça va > and (7)<ça va> near (3)<東京タワー>!", valid_ids={3, 7}
    )
    assert caption.sentence == "Café (brown)  ça va  and ça va near 東京タワー!"
    assert [p.phrase for p in caption.phrases] == ["ça va", "ça va", "東京タワー"]
    assert [p.annotation_id for p in caption.phrases] == [7, 7, 3]
    starts = [m.start() for m in re.finditer("ça va", caption.sentence)]
    assert [p.start_idx for p in caption.phrases[:2]] == starts
    for p in caption.phrases:
        assert caption.sentence[p.start_idx : p.end_idx] == p.phrase
        assert caption.sentence_raw[p.raw_start_idx :].startswith(
            f"[{p.annotation_id}]<{p.phrase}>"
        )
    assert re.sub(r"\[\d+\]<([^>]*)>", r"\1", caption.sentence_raw) == caption.sentence


def test_unknown_ids_become_plain_text() -> None:
    caption = parse_caption("(5)<A dog> chases (9)<a ball>.", valid_ids={5})
    assert caption.sentence_raw == "[5]<A dog> chases a ball."
    assert caption.dropped_ids == (9,)
    assert [p.phrase for p in caption.phrases] == ["A dog"]


def test_parse_reply_lines_numbering_and_quotes() -> None:
    reply = '1. "(1)<A dog> runs."\n\n2) (2)<Grass> grows.\n- \u201c(1)<It> barks.\u201d\n'
    captions = parse_reply(reply, valid_ids={1, 2})
    assert [c.sentence for c in captions] == ["A dog runs.", "Grass grows.", "It barks."]
    with pytest.raises(MalformedReplyError):
        parse_reply(" \n\n", valid_ids={1})


def test_backoff_is_exponential_and_seeded() -> None:
    policy = RetryPolicy(retries=4, base_delay_s=0.5, max_delay_s=3.0)
    delays = [policy.delay_s(k, random.Random("0:1")) for k in range(5)]
    assert delays == [policy.delay_s(k, random.Random("0:1")) for k in range(5)]
    for k, delay in enumerate(delays):
        floor = min(3.0, 0.5 * 2**k)
        assert floor <= delay < floor + 0.5


def test_loader_names_bad_fields(tmp_path: Path) -> None:
    data = write_coco(tmp_path / "coco", n_images=2)
    with pytest.raises(FileNotFoundError, match="panoptic_train"):
        load_engine_images(data, "train")
    path = data / "annotations" / "panoptic_val.json"
    pan = json.loads(path.read_text())
    pan["annotations"][1]["segments_info"][0]["bbox"] = [1, 2, -3, 4]
    path.write_text(json.dumps(pan))
    with pytest.raises(ValueError, match=r"annotations\[1\]\.segments_info\[0\].*'bbox'"):
        load_engine_images(data, "val")
    del pan["images"][0]["width"]
    pan["annotations"][1]["segments_info"][0]["bbox"] = [1, 2, 3, 4]
    path.write_text(json.dumps(pan))
    with pytest.raises(ValueError, match=r"images\[0\].*'width'"):
        load_engine_images(data, "val")


def test_prompt_is_published_verbatim() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert SYSTEM_PROMPT in text
    assert USER_TEMPLATE in text
