"""The FIND-Bench data engine (paper Algorithm 1): entity-grounded captions from a chat model.

For each image of a COCO-style split (panoptic segments + captions) the engine asks an
OpenAI-compatible chat server for captions whose mentions are marked ``(segment_id)<phrase>``,
parses them and writes a FIND-Bench entity JSON. Work is resumable: each finished image is
appended to ``OUT.progress.jsonl`` (fsynced per line) and skipped by a later run.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from findvl.data.engine.client import (
    RejectedRequestError,
    RetryPolicy,
    TransientRequestError,
)
from findvl.data.engine.inputs import EngineImage
from findvl.data.engine.progress import (
    ImageRecord,
    ProgressLog,
    atomic_write_text,
    caption_json,
    load_progress,
)
from findvl.data.engine.prompt import (
    SYSTEM_PROMPT,
    USER_TEMPLATE,
    MalformedReplyError,
    ParsedCaption,
    PromptRegion,
    build_messages,
    parse_reply,
)

PROMPT_SHA256 = hashlib.sha256((SYSTEM_PROMPT + "\0" + USER_TEMPLATE).encode()).hexdigest()


def image_messages(image: EngineImage, *, count: int = 1) -> list[dict[str, str]]:
    """The chat messages of one image (see :func:`findvl.data.engine.prompt.build_messages`)."""
    regions = [PromptRegion(s.id, s.category, s.bbox, s.iscrowd) for s in image.segments]
    return build_messages(
        captions=image.captions,
        pseudo_captions=image.pseudo_captions,
        regions=regions,
        width=image.width,
        height=image.height,
        count=count,
    )


@dataclass(frozen=True)
class EngineConfig:
    """Settings of one engine run.

    Attributes:
        out: the FIND-Bench entity JSON to write; progress goes to ``OUT.progress.jsonl`` and
            the summary to ``OUT.summary.json``.
        split: split name, recorded in the progress header.
        model: model name, recorded in the progress header.
        concurrency: at most this many requests in flight.
        captions_per_image: captions requested per image (one per reply line).
        retry: retry budget and backoff shared by transport errors and malformed replies.
        seed: seeds the backoff jitter (one stream per image).
        limit: process at most this many unfinished images in this run.
        retry_failed: re-attempt images a previous run recorded as failed.
    """

    out: Path
    split: str
    model: str
    concurrency: int = 4
    captions_per_image: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    seed: int = 0
    limit: int | None = None
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.captions_per_image < 1:
            raise ValueError(f"captions_per_image must be >= 1, got {self.captions_per_image}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")

    @property
    def progress_path(self) -> Path:
        return Path(f"{self.out}.progress.jsonl")

    @property
    def summary_path(self) -> Path:
        return Path(f"{self.out}.summary.json")

    def header(self) -> dict:
        return {
            "split": self.split,
            "model": self.model,
            "captions_per_image": self.captions_per_image,
            "prompt_sha256": PROMPT_SHA256,
        }


class ChatBackend(Protocol):
    """Anything that answers chat messages with the reply text (e.g. :class:`ChatClient`)."""

    def complete(self, messages: Sequence[dict[str, str]]) -> str: ...


@dataclass(frozen=True)
class EngineSummary:
    """Counts of one run; totals cover every image recorded in the progress file.

    Attributes:
        images_total: images of the split with at least one segment (the work list).
        images_without_segments: images left out because nothing can be grounded.
        images_done: images with a parsed reply.
        images_failed: images that exhausted their retries or were rejected.
        images_skipped: images already finished before this run.
        images_processed: images finished in this run.
        images_pending: images left for a later run (``limit``).
        annotations: captions written to the output.
        phrases_kept: grounded phrases written to the output.
        unknown_ids_dropped: mentions whose id is not a segment of the image.
        captions_without_phrases: captions omitted because no mention was kept.
        malformed_replies: replies rejected by the markup parser.
        retries: repeated attempts.
        output: the entity JSON written.
    """

    images_total: int
    images_without_segments: int
    images_done: int
    images_failed: int
    images_skipped: int
    images_processed: int
    images_pending: int
    annotations: int
    phrases_kept: int
    unknown_ids_dropped: int
    captions_without_phrases: int
    malformed_replies: int
    retries: int
    output: str


def _accept(record: ImageRecord, captions: list[ParsedCaption]) -> None:
    for caption in captions:
        record.unknown_ids_dropped += len(caption.dropped_ids)
        if caption.phrases:
            record.captions.append(caption)
        else:
            record.captions_without_phrases += 1


def process_image(image: EngineImage, *, client: ChatBackend, config: EngineConfig) -> ImageRecord:
    """Ask for one image's captions, retrying transport errors and malformed replies.

    Transport errors (timeout, connection, 429, 5xx) wait ``config.retry.delay_s`` before the
    next attempt; malformed replies are re-asked at once; other 4xx fail the image at once.
    """
    record = ImageRecord(image_id=image.image_id)
    messages = image_messages(image, count=config.captions_per_image)
    valid_ids = {segment.id for segment in image.segments}
    rng = random.Random(f"{config.seed}:{image.image_id}")
    attempts = config.retry.retries + 1
    last_error = ""
    for attempt in range(attempts):
        if attempt > 0:
            record.retries += 1
        try:
            captions = parse_reply(client.complete(messages), valid_ids=valid_ids)
        except MalformedReplyError as error:
            record.malformed_replies += 1
            last_error = f"malformed reply: {error}"
        except TransientRequestError as error:
            last_error = str(error)
            if attempt + 1 < attempts:
                time.sleep(config.retry.delay_s(attempt, rng))
        except RejectedRequestError as error:
            record.error = str(error)
            return record
        except (UnicodeError, http.client.HTTPException, OSError) as error:
            # a backend's undecodable or cut-short reply fails this attempt, not the run
            last_error = f"unreadable reply: {type(error).__name__}: {error}"
        else:
            _accept(record, captions)
            return record
    record.error = f"gave up after {attempts} attempt(s): {last_error}"
    return record


def entity_json(images: Sequence[EngineImage], records: dict[int, ImageRecord]) -> dict:
    """FIND-Bench entity JSON of the done images, by image id; annotation ids count from 1."""
    out_images: list[dict] = []
    annotations: list[dict] = []
    for image in sorted(images, key=lambda im: im.image_id):
        record = records.get(image.image_id)
        if record is None or record.error is not None or not record.captions:
            continue
        out_images.append(
            {
                "id": image.image_id,
                "file_name": image.file_name,
                "height": image.height,
                "width": image.width,
            }
        )
        for caption in record.captions:
            ann = {"id": len(annotations) + 1, "image_id": image.image_id}
            annotations.append({**ann, **caption_json(caption)})
    return {"images": out_images, "annotations": annotations}


def _summarise(
    work: Sequence[EngineImage], records: dict[int, ImageRecord], **counts: int | str
) -> EngineSummary:
    mine = [records[im.image_id] for im in work if im.image_id in records]
    done = [r for r in mine if r.error is None]
    return EngineSummary(
        images_total=len(work),
        images_done=len(done),
        images_failed=len(mine) - len(done),
        annotations=sum(len(r.captions) for r in done),
        phrases_kept=sum(len(c.phrases) for r in done for c in r.captions),
        unknown_ids_dropped=sum(r.unknown_ids_dropped for r in mine),
        captions_without_phrases=sum(r.captions_without_phrases for r in mine),
        malformed_replies=sum(r.malformed_replies for r in mine),
        retries=sum(r.retries for r in mine),
        **counts,
    )


def run_engine(
    images: Sequence[EngineImage], *, config: EngineConfig, client: ChatBackend
) -> EngineSummary:
    """Caption every unfinished image, append progress, then write the output and summary.

    Args:
        images: the split (see :func:`findvl.data.engine.inputs.load_engine_images`).
        config: run settings.
        client: the chat backend.

    Returns:
        The summary, also written to ``config.summary_path``.
    """
    header = config.header()
    records = load_progress(config.progress_path, header=header)
    work = [im for im in images if im.segments]
    finished = {i for i, r in records.items() if r.error is None or not config.retry_failed}
    todo = [im for im in work if im.image_id not in finished]
    selected = todo if config.limit is None else todo[: config.limit]
    bar = tqdm(total=len(selected), desc="data engine", unit="img", dynamic_ncols=True)
    with ProgressLog(config.progress_path, header=header) as log, bar:
        pool = ThreadPoolExecutor(max_workers=config.concurrency)
        try:
            futures = [
                pool.submit(process_image, im, client=client, config=config) for im in selected
            ]
            for future in as_completed(futures):
                record = future.result()
                log.append(record)
                records[record.image_id] = record
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    text = json.dumps(entity_json(images, records), ensure_ascii=False)
    atomic_write_text(config.out, text + "\n")
    summary = _summarise(
        work,
        records,
        images_without_segments=len(images) - len(work),
        images_skipped=len(work) - len(todo),
        images_processed=len(selected),
        images_pending=len(todo) - len(selected),
        output=str(config.out),
    )
    atomic_write_text(config.summary_path, json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def write_prompts(images: Sequence[EngineImage], *, path: Path, captions_per_image: int = 1) -> int:
    """Dry run: write ``{"image_id", "messages"}`` JSON lines for images with segments.

    Returns:
        The number of prompts written.
    """
    lines = [
        json.dumps(
            {"image_id": im.image_id, "messages": image_messages(im, count=captions_per_image)},
            ensure_ascii=False,
        )
        for im in images
        if im.segments
    ]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)
