"""One writer per run directory: an exclusive lock on ``run_dir/train.lock`` holding its pid.

The lock is an ``flock`` on the file, so the operating system releases it when the owner
exits, however it exits (a killed run never leaves a stale lock behind); the pid written
into the file only names the owner in the refusal message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "train.lock"


class RunLocked(ValueError):
    """Another process is writing the run directory."""


class RunLock:
    """Exclusive ownership of a run directory while held.

    Args:
        run_dir: the run directory (created if missing).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLocked` naming the owner's pid (no waiting)."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                f"{self.path.parent}: another training run (pid {owner}) is writing this run "
                "directory; wait for it to finish or pick another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays; its content no longer matters)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __del__(self) -> None:
        self.release()
