"""The demo server: it starts on a free port and stops, its command line, a service from a run."""

from __future__ import annotations

import pytest


def test_server_starts_on_a_free_port_and_stops(live_demo):
    import urllib.request

    pytest.importorskip("gradio")
    with live_demo() as (url, _, _):
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and b"FIND demo" in page.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)


@pytest.mark.parametrize(
    ("flags", "field"),
    [(["--port", "0"], "--port"), (["--max-queue", "0"], "--max-queue"), ([], "checkpoint")],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, flags, field):
    from findvl.cli import main

    code = main(["demo", "--checkpoint", str(tmp_path / "missing"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err


def test_examples_come_with_their_phrases(tiny_service):
    service, examples = tiny_service(images=2)
    assert len(examples.images) == 2 and len(service.gallery) == 2
    name, path, rgb = examples.images[0]
    assert path.name == name and rgb.shape == (64, 64, 3) and examples.phrases[name]


def test_make_service_from_a_run_and_a_dataset(tmp_path, tiny_run, tiny_world, demo_classes):
    from findvl.demo.server import make_service

    run = tiny_run(tmp_path / "run", classes=demo_classes)
    data = tiny_world(tmp_path / "data", images=3, seed=2)
    service, examples = make_service(run, data=data)
    assert service.class_names == demo_classes and len(examples.images) == 3
    assert [name for name, _ in service.gallery] == [name for name, _, _ in examples.images]


@pytest.mark.parametrize("flag", ["--data", "--index"])
def test_cli_missing_data_or_index_exit_2(tmp_path, capsys, flag, tiny_run, demo_classes):
    from findvl.cli import main

    run = tiny_run(tmp_path / "run", classes=demo_classes)
    code = main(["demo", "--checkpoint", str(run), flag, str(tmp_path / "nothing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err
