"""A ``connectord serve`` process for the CLI and SDK tests, its admin key made by the
CLI itself in the same data dir (one launcher for both suites)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from connectord.cli import app as cli_app

SCRIPT = Path(sys.executable).parent / "connectord"
#: Variables that would point the CLI elsewhere; the tests set what they need.
CLI_ENV = ("CONNECTORD_URL", "CONNECTORD_API_KEY", "CONNECTORD_TENANT", "CONNECTORD_DATABASE_URL")


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running server: where, its admin key, its data dir and log file."""

    url: str
    admin_key: str
    data_dir: Path
    log: Path


def run_cli(env: dict[str, str], *args: str) -> str:
    """The CLI in-process through its real entry point; its stdout."""
    unset: dict[str, str | None] = dict.fromkeys(CLI_ENV)
    done = CliRunner().invoke(cli_app, list(args), env={**env, **unset})
    assert done.exit_code == 0, done.output
    return done.stdout.strip()


@contextmanager
def serve(
    data: Path, extra_env: dict[str, str] | None = None, preexec_fn: Callable[[], object] | None = None
) -> Iterator[ServerProcess]:
    """Start ``connectord serve`` on SQLite in ``data`` and stop it by PID afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    # The scheduler is off unless a test turns it on: a check at a random moment would
    # change what other tests observe.
    env |= {
        "CONNECTORD_DATA_DIR": str(data),
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_SCHEDULER": "off",
        **(extra_env or {}),
    }
    run_cli(env, "tenants", "create", "ops")
    admin_key = run_cli(env, "keys", "create", "--tenant", "ops", "--scope", "admin", "--key-only")
    port = free_port()
    log = data / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"connectord serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"connectord serve did not answer within 30 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield ServerProcess(url, admin_key, data, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``connectord serve`` with exactly ``env`` (its log appended to ``log``), once it answers."""
    port = free_port()
    with log.open("a") as out:
        proc = subprocess.Popen([SCRIPT, "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def make_key(env: dict[str, str]) -> str:
    """A key with the default scopes (read, write, test), made by the CLI on the server's store."""
    for args in (("tenants", "create", "ops"), ("keys", "create", "--tenant", "ops", "--key-only")):
        made = subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
    return made.stdout.strip()
