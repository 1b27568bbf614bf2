"""`findvl index build` and `findvl search` on a small generated folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from findvl.cli import main
from findvl.index import FindIndex
from findvl.index.store import EmbeddingStore
from findvl.runs import load_run


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_run, image_folder) -> Path:
    root = tmp_path_factory.mktemp("index")
    tiny_run(root / "run")
    image_folder(root / "images", 9)
    (root / "images" / "sub" / "broken.png").write_bytes(b"not a png")
    (root / "images" / "notes.txt").write_text("not an image")
    assert main(build_args(root, root / "index", "--batch-size", "4")) == 0
    return root


def build_args(root: Path, out: Path, *extra: str) -> list[str]:
    images = ["--images", str(root / "images"), "--out", str(out), "--no-progress"]
    return ["index", "build", "--checkpoint", str(root / "run"), *images, *extra]


def search(root: Path, capsys, *extra: str, index: Path | None = None) -> list[dict]:
    argv = ["search", str(index or root / "index"), "--checkpoint", str(root / "run"), *extra]
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_build_embeds_every_image_and_counts_the_unreadable(world, capsys) -> None:
    index = FindIndex.load(world / "index")
    assert len(index) == 9 and index.manifest.num_skipped == 1
    assert sorted(index.ids) == sorted(
        p.relative_to(world / "images").as_posix() for p in (world / "images").rglob("im*")
    )
    assert [s["path"] for s in index.store.skipped] == ["sub/broken.png"]
    assert index.manifest.dim == 64 and index.manifest.objects == 16
    log = [json.loads(line) for line in (world / "index" / "build.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["batch"] * 3 + ["done"]  # 10 readable-looking files
    assert log[-1]["added"] == 9 and log[-1]["skipped"] == 1


def test_search_ranks_like_brute_force(world, capsys) -> None:
    ref = world / "images" / "im000.png"
    hits = search(
        world,
        capsys,
        "--query",
        "a [1]<red circle> left of a [2]<square>",
        "--ref",
        f"1={ref}:4,4,30,40",
        "--top-k",
        "5",
    )
    assert len(hits) == 5
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    run = load_run(world / "run")
    index = FindIndex.load(world / "index", model=run.model)
    from findvl.index.embed import parse_ref

    entity, reference, _ = parse_ref(f"1={ref}:4,4,30,40")
    query = index.embed_query("a [1]<red circle> left of a [2]<square>", {entity: reference})
    assert query.entities.shape == (2, 64)
    query.reference_ids = ["im000.png"]  # the reference image is in the collection
    brute = index.score_matrix([query])[0]
    order = np.lexsort((np.arange(len(brute)), -brute))[:5]
    expected = [str(world / "images" / index.ids[j]) for j in order]
    assert [h["image"] for h in hits] == expected
    np.testing.assert_allclose(scores, brute[order], rtol=0, atol=1e-12)


def test_plain_text_query_and_text_output(world, capsys) -> None:
    hits = search(world, capsys, "--query", "a photo of shapes", "--top-k", "20")
    assert len(hits) == 9  # never more than the collection
    argv = ["search", str(world / "index"), "--checkpoint", str(world / "run")]
    assert main([*argv, "--query", "a [3]<dog>", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1"


def test_rerun_adds_only_new_files(world, tmp_path, image_folder, tree_bytes) -> None:
    images = tmp_path / "images"
    shutil.copytree(world / "images", images)
    shutil.copytree(world / "index", tmp_path / "index")
    before = EmbeddingStore.open(tmp_path / "index")
    old = {k: v for k, v in tree_bytes(tmp_path / "index").items() if k.startswith("shards/")}
    image_folder(images, 3, start=100)
    root = tmp_path
    shutil.copytree(world / "run", root / "run")
    assert main(build_args(root, root / "index", "--resume")) == 0
    after = FindIndex.load(root / "index")
    assert len(after) == len(before) + 3
    assert after.ids[: len(before)] == before.ids
    assert sorted(after.ids[len(before) :]) == ["im100.png", "im102.png", "sub/im101.png"]
    new = tree_bytes(root / "index")
    assert all(new[k] == v for k, v in old.items())  # existing shards untouched
    assert main(build_args(root, root / "index", "--resume")) == 0  # nothing left to add
    assert len(FindIndex.load(root / "index")) == len(after)


def test_mismatched_checkpoint_is_refused_with_one_line(world, tmp_path, capsys, tiny_run) -> None:
    other = tiny_run(tmp_path / "other", seed=1)
    argv = ["index", "build", "--checkpoint", str(other), "--images", str(world / "images")]
    assert main([*argv, "--out", str(world / "index"), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match the index" in err
    query = ["search", str(world / "index"), "--checkpoint", str(other), "--query", "a dog"]
    assert main(query) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights hash" in err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--ref", "1=missing.png"], "missing.png"),
        (["--ref", "x=img.png"], "--ref"),
        (["--ref", "2=IMG:1,2,3"], "no image file"),
        (["--top-k", "0"], "--top-k"),
    ],
)
def test_bad_search_input_is_one_line(world, capsys, extra, named) -> None:
    extra = [e.replace("IMG", str(world / "images" / "im000.png")) for e in extra]
    argv = ["search", str(world / "index"), "--checkpoint", str(world / "run")]
    assert main([*argv, "--query", "a [1]<dog>", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_existing_index_without_resume_is_refused(world, capsys) -> None:
    assert main(build_args(world, world / "index")) == 2
    assert "--resume" in capsys.readouterr().err


def test_ranks_embed_parts_that_merge_into_the_single_process_index(
    world, tmp_path, capsys, tree_bytes
):
    out = tmp_path / "parallel"
    part = build_args(world, out, "--batch-size", "4", "--world-size", "2")
    assert main([*part, "--rank", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] + summary["skipped"] == 4  # batch 1 of batches 0..2
    assert main(["index", "merge", str(out)]) == 2  # rank 0 has not run
    assert "expected parts 0..1" in capsys.readouterr().err
    assert main([*part, "--rank", "0"]) == 0
    assert main(["index", "merge", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["total"] == 9
    assert not (out / "parts").exists()
    assert tree_bytes(out) == tree_bytes(world / "index")


def test_python_api_builds_saves_and_loads(world, tmp_path) -> None:
    run = load_run(world / "run")
    index = FindIndex.build(run.model, world / "images", batch_size=4)  # in memory
    assert len(index) == 9 and index.root is None
    cli_built = FindIndex.load(world / "index")
    assert index.ids == cli_built.ids
    np.testing.assert_array_equal(index.store.images(), cli_built.store.images())
    saved = index.save(tmp_path / "saved")
    assert saved.root == tmp_path / "saved" and (saved.root / "ann" / "faiss.index").is_file()
    again = FindIndex.load(tmp_path / "saved", model=run.model)
    expected = [(h.image, h.score) for h in index.search("a [1]<red circle>", k=4)]
    assert [(h.image, h.score) for h in again.search("a [1]<red circle>", k=4)] == expected
    with pytest.raises(FileExistsError):
        index.save(tmp_path / "saved")
