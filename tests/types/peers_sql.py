"""Real database servers for the sql probe tests, started on free loopback ports.

Each ``start_*`` function starts one server, waits until it answers, and
returns a handle whose ``stop()`` ends exactly that process (by its PID).
The recipes are the functions below.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _owned_dir(user: str) -> Path:
    # Under /tmp itself: pytest's tmp_path parents are 0700 root, which the server user cannot cross.
    path = Path(tempfile.mkdtemp(prefix=f"connectord-{user}-", dir="/tmp"))
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, seconds: float, log: Path) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {seconds} s")


def _stop_pid(pid: int, sig: signal.Signals = signal.SIGINT, seconds: float = 15) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class PgPeer:
    """A PostgreSQL server with scram-sha-256 passwords (and TLS when certificates are given)."""

    port: int
    base: Path  # holds the Unix socket, the log and ``data``
    password: str

    @property
    def pgdata(self) -> Path:
        """The cluster's data directory."""
        return self.base / "data"

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser over the server's Unix socket."""
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "-h", str(self.base),
             "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
             "-Atq", "-c", sql],
            capture_output=True, check=True, timeout=30, text=True,
        )  # fmt: skip
        return done.stdout

    def stop(self) -> None:
        """Stop the postmaster by its PID (fast shutdown) and remove the data directory."""
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            _stop_pid(int(pidfile.read_text().split()[0]))
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(password: str, cert_pem: bytes | None = None, key_pem: bytes | None = None) -> PgPeer:
    """initdb + pg_ctl on a free port, as the ``postgres`` user; about a second."""
    datadir = _owned_dir("postgres")
    pwfile = datadir / "pw"
    pwfile.write_text(password)
    shutil.chown(pwfile, "postgres")
    pgdata = datadir / "data"
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", "postgres",
         "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-N"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -c fsync=off -k {datadir}"
    if cert_pem is not None and key_pem is not None:
        for name, data in (("server.crt", cert_pem), ("server.key", key_pem)):
            (pgdata / name).write_bytes(data)
            (pgdata / name).chmod(0o600)
            shutil.chown(pgdata / name, "postgres")
        options += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    port = free_port()
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-l",
         str(datadir / "log"), "-o", f"{options} -p {port}", "-w", "-t", "60", "start"],
        capture_output=True, check=True, timeout=90,
    )  # fmt: skip
    return PgPeer(port, datadir, password)


@dataclass
class MariaPeer:
    """A second MariaDB server (``mariadbd``) with password logins, on its own data directory."""

    port: int
    datadir: Path
    proc: subprocess.Popen[bytes]

    def sql(self, statement: str) -> str:
        """Run SQL as root over the server's Unix socket."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", "-S", str(self.datadir / "mysqld.sock"), "-uroot", "-N", "-e",
             statement],
            capture_output=True, check=True, timeout=30, text=True,
        )  # fmt: skip
        return done.stdout

    def stop(self) -> None:
        """Stop mariadbd by its PID and remove the data directory."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.datadir, ignore_errors=True)


def start_mariadb() -> MariaPeer:
    """mariadb-install-db + mariadbd on a free port; a few seconds."""
    datadir = _owned_dir("mysql")
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={datadir / 'data'}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    log = datadir / "error.log"
    proc = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={datadir / 'data'}",
         "--bind-address=127.0.0.1", f"--port={port}", f"--socket={datadir / 'mysqld.sock'}",
         f"--pid-file={datadir / 'mysqld.pid'}", f"--log-error={log}", "--skip-name-resolve",
         "--innodb-buffer-pool-size=16M", "--performance-schema=OFF", "--skip-log-bin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peer = MariaPeer(port, datadir, proc)
    try:
        _wait_for_port(port, proc, 60, log)
    except Exception:
        peer.stop()
        raise
    return peer


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port whose listener completes TCP handshakes but never accepts or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
