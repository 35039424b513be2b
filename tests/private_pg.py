"""A PostgreSQL instance of a test's own, to stop, pause and start (readiness, timeouts)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_server import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PrivatePg:
    """A running instance: its URL, data dir and port; stop, start, pause and resume it."""

    url: str
    data: Path
    port: int

    def stop(self) -> None:
        _pg_ctl(self.data, self.port, "stop")

    def start(self) -> None:
        _pg_ctl(self.data, self.port, "start")

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: a database that is there and never answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def _pids(self) -> list[int]:
        main = int((self.data / "postmaster.pid").read_text().split()[0])
        found = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True, check=False)
        return [main, *(int(p) for p in found.stdout.split())]


@pytest.fixture
def private_pg() -> Iterator[PrivatePg]:
    """A PostgreSQL instance of the test's own (trust auth on loopback): its URL and data dir.

    Not under ``tmp_path``: the postgres user cannot enter pytest's root-only folders."""
    if not (PG_BIN / "pg_ctl").exists():
        pytest.fail(f"PostgreSQL's binaries are not in {PG_BIN}")
    data = Path(tempfile.mkdtemp(prefix="connectord-pg-"))
    shutil.chown(data, "postgres", "postgres")
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    port = free_port()
    _pg_ctl(data, port, "start")
    try:
        yield PrivatePg(f"postgresql://postgres@127.0.0.1:{port}/postgres", data, port)
    finally:
        _pg_ctl(data, port, "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)


def _as_postgres(*args: str, check: bool = True) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=check, capture_output=True, timeout=60)


def _pg_ctl(data: Path, port: int, action: str, *, check: bool = True) -> None:
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    extra = ["-m", "fast"] if action == "stop" else ["-o", options, "-l", str(data / "log")]
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", *extra, action, check=check)
