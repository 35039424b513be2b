"""SQLite's single owner of the background work: an exclusive ``flock`` on a file in the data dir.

The embedded store is one file that several processes may open (``serve`` with
``CONNECTORD_WORKERS > 1``, a ``connectord worker`` beside it, CLI commands), but
its scheduled checks run in one process only: whoever holds the lock. The kernel
drops the lock when its holder exits, however it exits, so a crashed owner never
leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = "scheduler.lock"


class OwnerLock:
    """The lock file of one data dir; :meth:`acquire` never waits."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self, role: str) -> bool:
        """Take the lock if no process holds it, writing who holds it (pid and ``role``)."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("pid 123, connectord serve")."""
        with contextlib.suppress(OSError):
            pid, _, role = self.path.read_text(encoding="utf-8").strip().partition(" ")
            if pid.isdigit():
                return f"pid {pid}, {role}" if role else f"pid {pid}"
        return "another process"

    def release(self) -> None:
        """Give the lock up (closing the file is what releases it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale holder for the next reader
            os.close(fd)
