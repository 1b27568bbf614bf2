"""One writer per run directory: an exclusive lock on ``run_dir/train.lock`` holding its pid.

The lock is a POSIX record lock (``lockf``) on the file. It belongs to the process that took
it: the operating system releases it when that process exits, however it exits (a killed run
never leaves a stale lock behind), and the processes it forks do not inherit it. (An ``flock``
would be shared with the training's DataLoader workers, which outlive a killed run by up to
their five-second watchdog interval and kept its directory locked against ``--resume``.)
The pid written into the file only names the owner in the refusal message.

Record locks do not exclude each other within one process, and closing any descriptor of the
file releases them; so this process keeps one descriptor per held directory and refuses a
second holder itself, and nothing else opens the lock file while it is held.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = "train.lock"

#: Lock files this process holds (record locks cannot tell two holders in one process apart).
_HELD: set[Path] = set()


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
        self._key: Path | None = None  # the resolved lock path in ``_HELD`` while held

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _refuse(self, owner: str) -> RunLocked:
        return RunLocked(
            f"{self.path.parent}: another training run (pid {owner}) is writing this run "
            "directory; wait for it to finish or pick another --out"
        )

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLocked` naming the owner's pid (no waiting)."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in _HELD:
            raise self._refuse(str(os.getpid()))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise self._refuse(owner) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd, self._key = fd, key
        _HELD.add(key)

    def release(self) -> None:
        """Give the lock up (the file stays; its content no longer matters)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD.discard(self._key)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __del__(self) -> None:
        self.release()
