"""JSON in and out: atomic writes, byte-stable output and field checks that name the input."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load_json(path: str | Path) -> Any:
    """Parse a UTF-8 JSON file; a missing or malformed file raises an error naming it.

    Raises:
        FileNotFoundError: ``PATH: no such file``.
        ValueError: ``PATH: not valid JSON (...)``, ``PATH: not UTF-8 text (...)`` or
            ``PATH: JSON nested too deeply``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def json_bytes(obj: Any) -> bytes:
    """Serialise with sorted keys and fixed separators, so equal data gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as byte-stable JSON."""
    atomic_write_bytes(path, json_bytes(obj))


_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    bool: "a boolean",
}


def get_field(record: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``record[name]`` checked to be of ``kind``.

    Args:
        record: a parsed JSON object.
        name: the field.
        kind: accepted Python type(s); ``float`` also accepts integers.
        where: location used in errors, e.g. ``"entity_val.json: annotations[3]"``.

    Raises:
        ValueError: naming ``where``, the field and the offending value.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    if name not in record:
        raise ValueError(f"{where}: missing field '{name}'")
    value = record[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        kinds = (*kinds, int)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise ValueError(f"{where}.{name}: expected {expected}, got {value!r:.80}")
    return value


def get_list(record: Any, name: str, where: str) -> list:
    """``record[name]``, which must be a list."""
    return get_field(record, name, list, where)


def get_int(record: Any, name: str, where: str) -> int:
    """``record[name]`` as an int; numeric strings (as some files store ids) are accepted."""
    value = get_field(record, name, (int, str), where)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{where}.{name}: expected an integer, got {value!r:.80}") from None
    return value
