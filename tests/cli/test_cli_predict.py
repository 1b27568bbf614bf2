"""``findvl segment|ground|click`` on one image: errors name the path, click writes PNG + RLE."""

from __future__ import annotations

import json

import pytest

from findvl.cli import main


@pytest.fixture(scope="module")
def run_and_image(tmp_path_factory, tiny_run, tiny_world):
    root = tmp_path_factory.mktemp("predict")
    run = tiny_run(root / "run", classes=["circle", "square"])
    image = next((tiny_world(root / "data", images=1) / "images" / "val").glob("*.png"))
    return run, image


def test_cli_errors_name_the_path(run_and_image, tmp_path, capsys):
    run, image = run_and_image
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    cases = [
        (["ground", str(image), "--checkpoint", str(tmp_path / "nope"), "--phrase", "x"], "nope"),
        (
            ["ground", str(tmp_path / "missing.png"), "--checkpoint", str(run), "--phrase", "x"],
            "missing.png",
        ),
        (["segment", str(bad), "--checkpoint", str(run)], "bad.png"),
    ]
    for argv, name in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and "Traceback" not in err


def test_cli_click_writes_overlay_and_rle(run_and_image, tmp_path):
    run, image = run_and_image
    out = tmp_path / "c"
    argv = ["click", str(image), "--checkpoint", str(run), "--point", "20,20", "--out", str(out)]
    assert main(argv) == 0
    records = json.loads((tmp_path / "c.click.json").read_text())
    assert len(records) == 1 and set(records[0]["segmentation"]) == {"size", "counts"}
    assert (tmp_path / "c.click.png").is_file()
