"""`findvl demo --checkpoint RUN`: the web page with every task (Gradio, local by default)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="run or checkpoint dir")
    parser.add_argument("--index", type=Path, default=None, help="a search index for retrieval")
    parser.add_argument(
        "--data", type=Path, default=None, help="dataset root whose val images are the examples"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-queue", type=int, default=16, help="requests waiting at most")
    parser.add_argument("--max-file-size", default="10mb", help="largest upload, e.g. 10mb")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port: expected 1..65535, got {args.port}")
    if args.max_queue < 1:
        raise ValueError(f"--max-queue: expected a positive number, got {args.max_queue}")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("demo: gradio is not installed; pip install 'findvl[demo]'") from None
    from findvl.demo.server import make_service, serve

    service, examples = make_service(
        args.checkpoint, data=args.data, index=args.index, device=args.device
    )
    print(f"findvl demo: serving on http://{args.host}:{args.port}", flush=True)
    serve(
        service,
        examples,
        host=args.host,
        port=args.port,
        max_queue=args.max_queue,
        max_file_size=args.max_file_size,
    )
    return 0
