"""``findvl data engine``: FIND-Bench entity captions from an OpenAI-compatible chat server."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from findvl.cli.checks import (
    check_output_file,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)


def register(parser: argparse.ArgumentParser) -> None:
    """Add the engine's arguments to ``parser`` and set ``func``."""
    parser.add_argument("--data", type=Path, required=True, help="dataset root with annotations/")
    parser.add_argument("--split", required=True, help="split name, e.g. val2017")
    parser.add_argument(
        "--llm-endpoint",
        required=True,
        help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    parser.add_argument("--model", required=True, help="model name the server serves")
    parser.add_argument("--out", type=Path, required=True, help="FIND-Bench entity JSON to write")
    parser.add_argument(
        "--concurrency", type=positive_int, metavar="K", default=4, help="requests in flight (4)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        metavar="S",
        default=120.0,
        help="seconds a whole request may take, reading the reply included (120)",
    )
    parser.add_argument(
        "--retries", type=nonnegative_int, metavar="R", default=3, help="retries per image (3)"
    )
    parser.add_argument(
        "--limit", type=nonnegative_int, metavar="N", default=None, help="process at most N images"
    )
    parser.add_argument("--dry-run", action="store_true", help="write the prompts to --out only")
    parser.add_argument(
        "--temperature",
        type=nonnegative_float,
        metavar="T",
        default=0.2,
        help="sampling temperature",
    )
    parser.add_argument(
        "--captions-per-image",
        type=positive_int,
        metavar="N",
        default=1,
        help="captions per image (1)",
    )
    parser.add_argument(
        "--pseudo-captions",
        type=Path,
        default=None,
        metavar="FILE",
        help="COCO-captions-format file of detailed model-written descriptions",
    )
    parser.add_argument(
        "--backoff",
        type=nonnegative_float,
        metavar="S",
        default=1.0,
        help="first retry wait, seconds",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", default=0, help="seed of the backoff jitter"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="re-attempt images recorded as failed"
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding a bearer token for the server (none by default)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the engine (or write the prompts with ``--dry-run``) and print the summary."""
    from findvl.data.engine.client import ChatClient, RetryPolicy
    from findvl.data.engine.inputs import load_engine_images
    from findvl.data.engine.run import EngineConfig, run_engine, write_prompts

    check_output_file(args.out)
    images = load_engine_images(args.data, args.split, pseudo_captions=args.pseudo_captions)
    if args.dry_run:
        selected = images if args.limit is None else images[: args.limit]
        count = write_prompts(selected, path=args.out, captions_per_image=args.captions_per_image)
        print(json.dumps({"prompts_written": count, "output": str(args.out)}))
        return 0
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env: environment variable {args.api_key_env} is not set")
    client = ChatClient(
        endpoint=args.llm_endpoint,
        model=args.model,
        timeout_s=args.timeout,
        temperature=args.temperature,
        api_key=api_key,
    )
    config = EngineConfig(
        out=args.out,
        split=args.split,
        model=args.model,
        concurrency=args.concurrency,
        captions_per_image=args.captions_per_image,
        retry=RetryPolicy(retries=args.retries, base_delay_s=args.backoff),
        seed=args.seed,
        limit=args.limit,
        retry_failed=args.retry_failed,
    )
    summary = run_engine(images, config=config, client=client)
    print(json.dumps(asdict(summary), indent=2))
    return 0
