"""``GET /api/v1/connectors/{id}/health`` on a real server (SQLite and PostgreSQL), the SDK's
``health(id)``, and the CLI's ``connectors health`` (a table, and ``--watch`` in a terminal).

Connectors are tested for real against loopback targets (a listening socket, a port
that refuses); the summary is compared with the same figures computed here from
``GET .../history``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from connectord.cli import app as cli_app
from connectord.client import AsyncClient, Client
from connectord.errors import NotFoundError
from connectord.model import HealthSummary, TestResult
from tests.cli_server import CLI_ENV, SCRIPT
from tests.test_health_summary import as_figures, independent

from .conftest import Server, Tenant, assert_problem, create_key, register

Names = Callable[[str], str]
C = "/api/v1/connectors"
SECRET = "health-S3cret-9c1d"


class Toggle:
    """A loopback port that accepts connections while open and refuses them once closed."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()

    def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def toggle() -> Iterator[Toggle]:
    """A port to switch between reachable and refused."""
    target = Toggle()
    yield target
    target.close()


def _history(tenant: Tenant, connector_id: str) -> list[TestResult]:
    results: list[TestResult] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get(f"{C}/{connector_id}/history", params=params).json()
        results += [TestResult.from_dict(item) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return results


def _test(tenant: Tenant, connector_id: str, success: bool) -> None:
    response = tenant.http.post(f"{C}/{connector_id}/test")
    assert response.status_code == 200, response.text
    assert response.json()["success"] is success, response.text


def test_health_equals_the_figures_of_the_history(api_tenant: Tenant, toggle: Toggle, unique: Names) -> None:
    created = register(api_tenant.http, unique("flaky"), endpoint=f"127.0.0.1:{toggle.port}")
    cid = created["id"]
    empty = api_tenant.http.get(f"{C}/{cid}/health")
    assert empty.status_code == 200, empty.text
    assert empty.json()["uptime"] == {"1h": None, "24h": None, "7d": None}
    assert empty.json()["status"] == "registered"

    toggle.open()
    for _ in range(3):
        _test(api_tenant, cid, True)
    toggle.close()
    for _ in range(2):
        _test(api_tenant, cid, False)
    toggle.open()
    for _ in range(2):
        _test(api_tenant, cid, True)

    response = api_tenant.http.get(f"{C}/{cid}/health")
    assert response.status_code == 200, response.text
    summary = HealthSummary.from_dict(response.json())
    connector = api_tenant.http.get(f"{C}/{cid}").json()
    history = _history(api_tenant, cid)
    assert len(history) == 7
    changed = connector["updated_at"] or connector["created_at"]
    assert as_figures(summary) == independent(history, summary.computed_at, connector["status"], changed)
    assert response.json()["checks"]["1h"] == {"total": 7, "ok": 5}
    assert summary.windows["24h"].uptime == pytest.approx(5 / 7)
    assert summary.status == "connected"
    assert summary.status_since == history[1].tested_at  # the first success after the failures
    assert summary.last_error is not None
    assert summary.last_error.error_kind == "refused"
    assert summary.consecutive_failures == 0
    assert summary.latency_samples == 5


def test_health_needs_the_read_scope_and_stays_in_its_tenant(
    server: Server, api_tenant: Tenant, other_api_tenant: Tenant, unique: Names, closed_port: int
) -> None:
    created = register(api_tenant.http, unique("mine"), endpoint=f"127.0.0.1:{closed_port}")
    url = f"{C}/{created['id']}/health"
    _test(api_tenant, created["id"], False)
    tester = server.client(create_key(server, api_tenant, ["connectors:test"]))
    assert "connectors:read" in assert_problem(tester.get(url), 403, "forbidden")["detail"]
    assert_problem(server.client().get(url), 401, "unauthorized")
    reader = server.client(create_key(server, api_tenant, ["connectors:read"]))
    assert reader.get(url).status_code == 200

    stolen = assert_problem(other_api_tenant.http.get(url), 404, "not-found")
    nowhere = assert_problem(
        other_api_tenant.http.get(f"{C}/00000000-0000-7000-8000-000000000000/health"), 404
    )
    assert {k: v for k, v in stolen.items() if k != "request_id"} == {
        k: v for k, v in nowhere.items() if k != "request_id"
    }
    assert_problem(api_tenant.http.get(f"{C}/not-an-id/health"), 404, "not-found")


def test_health_carries_no_secret(api_tenant: Tenant, unique: Names, closed_port: int) -> None:
    created = register(api_tenant.http, unique("s"), endpoint=f"tcp://app:{SECRET}@127.0.0.1:{closed_port}")
    assert created["secret_fields"] == ["password"]
    _test(api_tenant, created["id"], False)
    response = api_tenant.http.get(f"{C}/{created['id']}/health")
    assert response.status_code == 200
    assert response.json()["last_error"]["error_kind"] == "refused"
    assert SECRET not in response.text


def test_the_sdk_reads_health(server: Server, api_tenant: Tenant, unique: Names, listener: int) -> None:
    created = register(api_tenant.http, unique("sdk"), endpoint=f"127.0.0.1:{listener}")
    _test(api_tenant, created["id"], True)
    with Client(server.base_url, api_tenant.key) as client:
        summary = client.health(created["id"])
        assert isinstance(summary, HealthSummary)
        assert (summary.status, summary.windows["1h"].checks) == ("connected", 1)
        assert client.health() == {"status": "ok"}  # without an id: the server's liveness
        with pytest.raises(NotFoundError):
            client.health("00000000-0000-7000-8000-000000000000")

    async def read() -> HealthSummary:
        async with AsyncClient(server.base_url, api_tenant.key) as client:
            return await client.health(created["id"])

    assert asyncio.run(read()).to_dict()["checks"] == summary.to_dict()["checks"]


# --- the CLI --------------------------------------------------------------------------------


def _env(server: Server, tenant: Tenant) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    return env | {"CONNECTORD_URL": server.base_url, "CONNECTORD_API_KEY": tenant.key}


def test_cli_shows_one_connector_and_every_connector(
    server: Server, api_tenant: Tenant, unique: Names, listener: int, closed_port: int
) -> None:
    up = register(api_tenant.http, unique("up"), endpoint=f"127.0.0.1:{listener}")
    down = register(api_tenant.http, unique("down"), endpoint=f"127.0.0.1:{closed_port}")
    _test(api_tenant, up["id"], True)
    _test(api_tenant, down["id"], False)
    runner = CliRunner()
    env: dict[str, str | None] = {**_env(server, api_tenant)}

    def cli(*args: str) -> str:
        done = runner.invoke(cli_app, list(args), env=env)
        assert done.exit_code == 0, done.output
        return done.stdout

    detail = cli("connectors", "health", up["name"])
    assert "Uptime 1h" in detail
    assert "100.0% (1/1 checks)" in detail
    data = json.loads(cli("connectors", "health", down["name"], "-o", "json"))
    served = api_tenant.http.get(f"{C}/{down['id']}/health").json()
    assert {k: v for k, v in data.items() if k not in ("name", "computed_at")} == {
        k: v for k, v in served.items() if k != "computed_at"
    }
    table = cli("connectors", "health")
    for name in (up["name"], down["name"]):
        assert name in table
    assert "refused" in table
    assert {d["name"] for d in json.loads(cli("connectors", "health", "-o", "json"))} == {
        up["name"],
        down["name"],
    }
    errors = runner.invoke(cli_app, ["connectors", "health", "--watch", "-o", "json"], env=env)
    assert errors.exit_code == 2


def _read_until(fd: int, seen: bytearray, needle: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed: the process is gone
                return False
    return True


def test_cli_watch_refreshes_and_ends_cleanly_on_ctrl_c(
    server: Server, api_tenant: Tenant, unique: Names, listener: int
) -> None:
    name = unique("watched")
    created = register(api_tenant.http, name, endpoint=f"127.0.0.1:{listener}")
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    env = _env(server, api_tenant) | {"COLUMNS": "200", "LINES": "40", "TERM": "xterm"}
    process = subprocess.Popen(
        [SCRIPT, "connectors", "health", "--watch", "--interval", "0.5"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    seen = bytearray()
    try:
        assert _read_until(primary, seen, name.encode(), 20), seen.decode(errors="replace")
        assert b"registered" in seen
        _test(api_tenant, created["id"], True)  # the next refresh shows the change
        assert _read_until(primary, seen, b"connected", 10), seen.decode(errors="replace")
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=10) == 0
        _read_until(primary, seen, b"\x00", 0.5)  # what it printed on the way out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    text = seen.decode(errors="replace")
    assert "Traceback" not in text
    assert "interrupted" not in text
    assert "Ctrl-C to stop" in text
