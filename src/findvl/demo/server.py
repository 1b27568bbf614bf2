"""Load a run, build the page, serve it: what ``findvl demo`` does."""

from __future__ import annotations

import os
from pathlib import Path

from findvl.demo.examples import Examples, load_examples, synthesise_examples
from findvl.demo.service import DemoService


def make_service(
    checkpoint: str | Path,
    *,
    data: str | Path | None = None,
    index: str | Path | None = None,
    device: str = "cpu",
) -> tuple[DemoService, Examples]:
    """The service over a run's model and the example images (see :mod:`findvl.demo.examples`)."""
    from findvl.predictor import FindPredictor
    from findvl.runs import load_run

    run = load_run(checkpoint, device=device)
    examples = Examples()
    if data is not None:
        if not (Path(data) / "images" / "val").is_dir():
            raise FileNotFoundError(f"--data: no val images under {data} (expected images/val)")
        examples = load_examples(Path(data))
    elif run.data_root and Path(run.data_root).is_dir():
        examples = load_examples(Path(run.data_root))
    if not examples.images:
        examples = synthesise_examples()
    service = DemoService(
        FindPredictor(run.model),
        run.class_names,
        run.isthing,
        gallery=examples.gallery,
        index=open_index(index, run) if index is not None else None,
    )
    return service, examples


def open_index(path: str | Path, run):
    """A search index built by ``findvl index`` (needs :mod:`findvl.index`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--index: no such index: {path}")
    try:
        from findvl.index import FindIndex, ModelFingerprint
    except ImportError:
        raise ValueError("--index: this installation has no findvl.index module") from None
    return FindIndex.load(path, model=run.model, fingerprint=ModelFingerprint.of_run(run))


def serve(
    service: DemoService,
    examples: Examples,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_queue: int = 16,
    max_file_size: str = "10mb",
    block: bool = True,
):
    """Build the page and launch it; returns the Gradio app (``block=False``: call
    ``app.close()`` to stop it)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from findvl.demo.app import build_app

    app = build_app(service, examples, max_queue=max_queue)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        prevent_thread_lock=not block,
        quiet=True,
        show_error=False,
        ssr_mode=False,
        footer_links=["api"],
    )
    return app
