"""Integrity of checkpoint directories: content hashes, finite weights, leftovers of saves.

A checkpoint's ``state.json`` records the SHA-256 of every other file; a file whose bytes
changed without changing its size (bit rot, a partial overwrite) is then caught at load time
instead of loading weights that predict nothing. The checks themselves live with the readers
(:mod:`findvl.run_files`, :mod:`findvl.model_file`), so inference needs no training code.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from findvl.model_file import (  # noqa: F401  (re-exported)
    check_finite,
    check_model_tensors,
    file_sha256,
)
from findvl.run_files import check_hashes, file_hashes  # noqa: F401  (re-exported)

_TMP_DIR = re.compile(r"^\.tmp-(step_\d{8,})-\d+$")
_OLD_DIR = re.compile(r"^\.old-(step_\d{8,})-\d+$")


def clean_interrupted_saves(run_dir: Path) -> list[Path]:
    """Remove leftovers of saves that were killed, whoever wrote them.

    Call it only while holding the run directory's lock (no save is in flight then).
    ``.tmp-step_*`` directories are unfinished saves and are deleted; an ``.old-step_*``
    directory is the previous copy of a re-saved step: restored when the new copy never
    arrived, deleted otherwise. Returns the removed paths.
    """
    removed: list[Path] = []
    if not run_dir.is_dir():
        return removed
    for path in sorted(run_dir.iterdir()):
        if _TMP_DIR.match(path.name) and path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif (m := _OLD_DIR.match(path.name)) and path.is_dir():
            final = run_dir / m.group(1)
            if final.exists():
                shutil.rmtree(path)
                removed.append(path)
            else:
                os.rename(path, final)
    return removed
