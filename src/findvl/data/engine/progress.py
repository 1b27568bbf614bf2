"""Resumable progress of the data engine: one JSON line per finished image, fsynced.

The first line is a header naming the split, model, prompt hash and caption count, so a progress
file is never resumed by a run with other settings.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from findvl.data.engine.prompt import ParsedCaption, ParsedPhrase


@dataclass
class ImageRecord:
    """The outcome for one image, as stored in one progress line.

    Attributes:
        image_id: the image.
        captions: parsed captions (empty when failed); captions without a kept phrase omitted.
        error: why the image failed, or None when it is done.
        unknown_ids_dropped: mentions whose id is not a segment of the image.
        captions_without_phrases: captions omitted because no mention was kept.
        malformed_replies: replies rejected by the markup parser.
        retries: repeated attempts (after transport errors or malformed replies).
    """

    image_id: int
    captions: list[ParsedCaption] = field(default_factory=list)
    error: str | None = None
    unknown_ids_dropped: int = 0
    captions_without_phrases: int = 0
    malformed_replies: int = 0
    retries: int = 0

    def to_json(self) -> dict:
        data = asdict(self)
        data["captions"] = [caption_json(c) for c in self.captions]
        return data

    @classmethod
    def from_json(cls, data: dict) -> ImageRecord:
        captions = [
            ParsedCaption(
                sentence=c["sentence"],
                sentence_raw=c["sentence_raw"],
                phrases=tuple(_phrase_from_json(p) for p in c["phrase"]),
                dropped_ids=(),
            )
            for c in data["captions"]
        ]
        return cls(**{**data, "captions": captions})


def caption_json(caption: ParsedCaption) -> dict:
    phrases = [
        {
            "annotation_id": p.annotation_id,
            "phrase": p.phrase,
            "start_idx": p.start_idx,
            "end_idx": p.end_idx,
            "_start_idx": p.raw_start_idx,
        }
        for p in caption.phrases
    ]
    return {"sentence": caption.sentence, "sentence_raw": caption.sentence_raw, "phrase": phrases}


def _phrase_from_json(p: dict) -> ParsedPhrase:
    return ParsedPhrase(
        p["annotation_id"], p["phrase"], p["start_idx"], p["end_idx"], p["_start_idx"]
    )


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_progress(path: Path, *, header: dict) -> dict[int, ImageRecord]:
    """Read the progress file of an earlier run.

    A line counts only once its newline is written; a torn last line (an interrupted append) is
    cut off the file. A done record is never replaced; a failed one is replaced by a later line.

    Raises:
        ValueError: a complete line is not a valid record, or the file was written for another
            split, model, prompt or caption count (the message names the file and line).
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
    records: dict[int, ImageRecord] = {}
    for number, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        try:
            obj = json.loads(line)
            if number == 1:
                if obj["header"] != header:
                    raise ValueError(
                        f"{path}: written for {obj['header']}, this run is {header}; "
                        "use another --out or delete the progress file"
                    )
                continue
            record = ImageRecord.from_json(obj)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{path}: line {number} is not a progress record: {error!r}"
            ) from error
        previous = records.get(record.image_id)
        if previous is None or previous.error is not None:
            records[record.image_id] = record
    return records


class ProgressLog:
    """Appends one JSON line per finished image, flushed and fsynced (a context manager)."""

    def __init__(self, path: Path, *, header: dict) -> None:
        self.path = path
        self.header = header

    def __enter__(self) -> ProgressLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if self.path.stat().st_size == 0:
            self._write({"header": self.header})
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def _write(self, obj: dict) -> None:
        self._handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append(self, record: ImageRecord) -> None:
        self._write(record.to_json())
