"""Bulk tests over the API (``POST /connectors/bulk-test``, ``GET /bulk-tests/{id}``) on a
real server, SQLite and PostgreSQL, against loopback targets: a listening socket, a
refused port, and an HTTP server that answers slowly and counts the requests in flight.
Then the CLI's ``connectors test --all`` against a server, a shutdown mid-way, and the
library's ``start_bulk_test`` with the scripted ``vault`` type (no network)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from connectord.bulk import STALE_SECONDS, to_bulk_test
from connectord.cli import app as cli_app
from connectord.errors import ConflictError
from connectord.facade import ConnectorsFacade
from connectord.model import BulkTestStatus, utcnow
from connectord.settings import Settings
from connectord.store.base import BulkTestRecord
from tests.cli_server import CLI_ENV, SCRIPT
from tests.conftest import VaultType

from .conftest import Server, Tenant, assert_problem, create_key, create_tenant, register, run_server

Names = Callable[[str], str]
C = "/api/v1/connectors"
BULK = f"{C}/bulk-test"


class SlowHttp:
    """A loopback HTTP server answering 200 after ``delay`` seconds; it keeps the most
    requests it had in flight at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most = 0
        self.served = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.in_flight += 1
                    outer.most = max(outer.most, outer.in_flight)
                time.sleep(outer.delay)
                with outer._lock:
                    outer.in_flight -= 1
                    outer.served += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def slow_http() -> Iterator[Callable[[float], SlowHttp]]:
    """Make slow HTTP servers (closed at the end)."""
    made: list[SlowHttp] = []

    def make(delay: float) -> SlowHttp:
        made.append(SlowHttp(delay))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _wait_done(http: httpx.Client, location: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(location)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "running":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def _start(tenant: Tenant, body: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    response = tenant.http.post(BULK, json=body) if body is not None else tenant.http.post(BULK)
    assert response.status_code == 202, response.text
    started: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/api/v1/bulk-tests/{started['id']}"
    return response.headers["location"], started


def test_a_bulk_test_runs_in_the_background_and_sums_up(
    api_tenant: Tenant,
    unique: Names,
    listener: int,
    closed_port: int,
    slow_http: Callable[[float], SlowHttp],
) -> None:
    slow = slow_http(0.3)
    ups = [register(api_tenant.http, unique("up"), endpoint=f"127.0.0.1:{listener}") for _ in range(4)]
    downs = [register(api_tenant.http, unique("down"), endpoint=f"127.0.0.1:{closed_port}") for _ in range(2)]
    web = register(api_tenant.http, unique("web"), connector_type="http", endpoint=slow.url)
    old = register(api_tenant.http, unique("old"))
    assert api_tenant.http.put(f"{C}/{old['id']}", json={"status": "deprecated"}).status_code == 200

    location, started = _start(api_tenant)  # no body: every connector
    assert started["status"] == "running"
    assert (started["total"], started["filters"]) == (7, {"connector_type": None, "status": None})
    assert started["summary"] is None
    done = _wait_done(api_tenant.http, location)

    assert done["status"] == "done"
    assert (done["total"], done["done"], done["ok"], done["failed"]) == (7, 7, 5, 2)
    assert done["finished_at"] is not None
    summary = done["summary"]
    assert summary["failed_by_kind"] == {"refused": 2}
    assert summary["slowest"][0]["name"] == web["name"]
    assert summary["slowest"][0]["latency_ms"] >= 300
    assert len(summary["slowest"]) == 5
    latencies = [s["latency_ms"] for s in summary["slowest"]]
    assert latencies == sorted(latencies, reverse=True)
    assert {f["name"] for f in summary["failures"]} == {d["name"] for d in downs}
    assert all(f["error_kind"] == "refused" and f["error"] for f in summary["failures"])

    # Recorded like any test: one result in each history, audited under the caller's key.
    for c in [*ups, *downs, web]:
        assert len(api_tenant.http.get(f"{C}/{c['id']}/history").json()["items"]) == 1
    assert api_tenant.http.get(f"{C}/{old['id']}/history").json()["items"] == []
    assert api_tenant.http.get(f"{C}/{downs[0]['id']}").json()["status"] == "error"
    audit = api_tenant.http.get("/api/v1/audit", params={"connector_id": web["id"]}).json()["items"]
    assert audit[0]["action"] == "connector.test"
    assert audit[0]["actor"] == f"key:{api_tenant.key_id}"
    assert slow.served == 1


def test_filters_choose_the_connectors(
    api_tenant: Tenant, unique: Names, listener: int, closed_port: int, slow_http: Callable[[float], SlowHttp]
) -> None:
    slow = slow_http(0.0)
    register(api_tenant.http, unique("up"), endpoint=f"127.0.0.1:{listener}")
    register(api_tenant.http, unique("down"), endpoint=f"127.0.0.1:{closed_port}")
    register(api_tenant.http, unique("web"), connector_type="http", endpoint=slow.url)

    location, started = _start(api_tenant, {"connector_type": "http"})
    assert started["filters"] == {"connector_type": "http", "status": None}
    assert (_wait_done(api_tenant.http, location)["done"], slow.served) == (1, 1)
    location, _ = _start(api_tenant, {"status": "registered"})
    first = _wait_done(api_tenant.http, location)
    assert (first["total"], first["ok"], first["failed"]) == (2, 1, 1)
    location, started = _start(api_tenant, {"status": "error", "connector_type": "custom"})
    assert started["total"] == 1
    assert _wait_done(api_tenant.http, location)["summary"]["failed_by_kind"] == {"refused": 1}
    location, started = _start(api_tenant, {"connector_type": "sql"})
    assert _wait_done(api_tenant.http, location)["total"] == 0


def test_concurrency_is_bounded(
    api_tenant: Tenant, unique: Names, slow_http: Callable[[float], SlowHttp]
) -> None:
    slow = slow_http(0.3)
    for _ in range(6):
        register(api_tenant.http, unique("web"), connector_type="http", endpoint=slow.url)
    location, started = _start(api_tenant, {"concurrency": 2})
    assert started["concurrency"] == 2
    done = _wait_done(api_tenant.http, location)
    assert (done["ok"], slow.served) == (6, 6)
    assert slow.most == 2  # parallel, and never more than asked
    _, capped = _start(api_tenant, {"concurrency": 1000})
    assert capped["concurrency"] == 16  # the server's CONNECTORD_TEST_CONCURRENCY


def test_one_bulk_test_at_a_time_per_tenant(
    api_tenant: Tenant, other_api_tenant: Tenant, unique: Names, slow_http: Callable[[float], SlowHttp]
) -> None:
    slow = slow_http(0.5)
    register(api_tenant.http, unique("web"), connector_type="http", endpoint=slow.url)
    location, _ = _start(api_tenant)
    busy = assert_problem(api_tenant.http.post(BULK), 409, "conflict")
    assert "still running" in busy["detail"]
    _, theirs = _start(other_api_tenant)  # another tenant is not held up
    assert theirs["total"] == 0
    _wait_done(api_tenant.http, location)
    _start(api_tenant)


def test_isolation_scopes_and_validation(
    server: Server, api_tenant: Tenant, other_api_tenant: Tenant
) -> None:
    location, _ = _start(api_tenant)
    _wait_done(api_tenant.http, location)
    stolen = assert_problem(other_api_tenant.http.get(location), 404, "not-found")
    nowhere = assert_problem(
        other_api_tenant.http.get("/api/v1/bulk-tests/00000000-0000-7000-8000-000000000000"), 404
    )
    assert stolen["detail"] == nowhere["detail"]
    assert_problem(api_tenant.http.get("/api/v1/bulk-tests/not-an-id"), 404, "not-found")

    reader = server.client(create_key(server, api_tenant, ["connectors:read"]))
    assert "connectors:test" in assert_problem(reader.post(BULK), 403, "forbidden")["detail"]
    assert reader.get(location).status_code == 200
    tester = server.client(create_key(server, api_tenant, ["connectors:test"]))
    assert "connectors:read" in assert_problem(tester.get(location), 403, "forbidden")["detail"]
    assert_problem(server.client().post(BULK), 401, "unauthorized")

    for body, field in [
        ({"status": "bogus"}, "status"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": "2"}, "concurrency"),
        ({"connector_type": ""}, "connector_type"),
        ({"connector_type": "a\u0000b"}, "connector_type"),
        ({"surprise": 1}, "surprise"),
    ]:
        problem = assert_problem(api_tenant.http.post(BULK, json=body), 422, "validation")
        assert any(field in e["loc"] for e in problem["errors"]), problem
    assert_problem(api_tenant.http.post(BULK, json=[1, 2]), 422, "validation")


def test_no_secret_in_a_bulk_test(
    server: Server, api_tenant: Tenant, unique: Names, closed_port: int
) -> None:
    secret = "bulk-S3cret-77ab"
    made = register(api_tenant.http, unique("s"), endpoint=f"tcp://app:{secret}@127.0.0.1:{closed_port}")
    assert made["secret_fields"] == ["password"]
    location, _ = _start(api_tenant)
    done = _wait_done(api_tenant.http, location)
    assert done["summary"]["failures"][0]["error_kind"] == "refused"
    assert secret not in api_tenant.http.get(location).text
    assert secret not in server.log_text()


def test_a_stopped_process_reads_as_cancelled() -> None:
    now = utcnow()
    record = BulkTestRecord(
        id="b", tenant_id="t", status="running", filters={"concurrency": 4}, total=10, done=3, ok=3,
        summary={"heartbeat_at": (now - timedelta(seconds=5)).isoformat()}, owner="x", created_at=now,
    )  # fmt: skip
    assert to_bulk_test(record, now).status == BulkTestStatus.RUNNING
    later = now + timedelta(seconds=STALE_SECONDS + 5)
    stale = to_bulk_test(record, later)
    assert (stale.status, stale.done, stale.summary) == (BulkTestStatus.CANCELLED, 3, None)


# --- the CLI against a server, and a server shutting down -----------------------------------


def _cli_env(server: Server, tenant: Tenant) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    return env | {"CONNECTORD_URL": server.base_url, "CONNECTORD_API_KEY": tenant.key}


def test_cli_test_all_runs_on_the_server(
    server: Server, api_tenant: Tenant, unique: Names, listener: int, closed_port: int
) -> None:
    ups = [register(api_tenant.http, unique("up"), endpoint=f"127.0.0.1:{listener}") for _ in range(2)]
    down = register(api_tenant.http, unique("down"), endpoint=f"127.0.0.1:{closed_port}")
    runner = CliRunner()
    env: dict[str, str | None] = {**_cli_env(server, api_tenant)}
    done = runner.invoke(cli_app, ["connectors", "test", "--all"], env=env)
    assert done.exit_code == 1, done.output
    assert "Tested 3 connector(s)" in done.stdout
    assert "2 ok, 1 failed" in done.stdout
    assert "FAILED BY KIND" in done.stdout
    assert f"✗ {down['name']}" in done.stdout
    assert "SLOWEST" in done.stdout
    assert server.wait_for_log(f"POST {BULK} 202")  # the server ran it

    as_json = runner.invoke(cli_app, ["connectors", "test", "--status", "connected", "-o", "json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["tested"], data["ok"], data["failed"], data["status"]) == (2, 2, 0, "done")
    assert {s["name"] for s in data["slowest"]} == {u["name"] for u in ups}
    assert data["bulk_test_id"]


def test_cli_shows_the_server_s_progress(
    server: Server, api_tenant: Tenant, unique: Names, slow_http: Callable[[float], SlowHttp]
) -> None:
    slow = slow_http(0.4)
    for _ in range(4):
        register(api_tenant.http, unique("web"), connector_type="http", endpoint=slow.url)
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [SCRIPT, "connectors", "test", "--all", "--concurrency", "1"],
        stdin=secondary, stdout=secondary, stderr=secondary,
        env=_cli_env(server, api_tenant) | {"COLUMNS": "120", "TERM": "xterm"},
    )  # fmt: skip
    os.close(secondary)
    seen = bytearray()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                seen += os.read(primary, 65536)
            except OSError:  # the terminal closed: the command ended
                break
        elif process.poll() is not None:
            break
    os.close(primary)
    assert process.wait(timeout=10) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))  # no colours
    assert "Testing on the server" in text  # the progress bar, drawn while the server worked
    assert "Tested 4 connector(s)" in text
    assert "4 ok, 0 failed" in text


def test_a_server_shutting_down_cancels_its_bulk_test(
    request: pytest.FixtureRequest, tmp_path: Any, slow_http: Callable[[float], SlowHttp]
) -> None:
    slow = slow_http(1.0)
    data_dir = tmp_path / "srv"
    with run_server("sqlite", data_dir, request) as first:
        tenant = create_tenant(first, "stop")
        for i in range(6):
            register(tenant.http, f"web-{i}", connector_type="http", endpoint=slow.url)
        location, _ = _start(tenant, {"concurrency": 1})
        deadline = time.monotonic() + 10
        while slow.served < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        key = tenant.key
        stopping = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        # Issue 14.2: a clean exit, within the drain bound (CONNECTORD_DRAIN_TIMEOUT, 30 s).
        assert first.process.wait(timeout=40) == 0
        assert time.monotonic() - stopping < 30
    with run_server("sqlite", data_dir, request) as second:
        body = second.client(key).get(location).json()
    assert body["status"] == "cancelled", body
    assert 1 <= body["done"] < body["total"] == 6
    assert body["finished_at"] is not None
    assert body["summary"] is not None


# --- the library (facade) on both backends, with the scripted ``vault`` test type ------------


async def test_the_library_runs_a_bulk_test(
    facade: ConnectorsFacade, tenant: str, other_tenant: str, vault: VaultType
) -> None:
    for name, config in (("a", {}), ("b", {"sleep": 0.2}), ("c", {"ok": False})):
        await facade.register_connector(tenant, name, "vault", config=config)
    started = await facade.start_bulk_test(tenant, "vault", concurrency=2)
    assert (started.status, started.total, started.concurrency) == (BulkTestStatus.RUNNING, 3, 2)
    with pytest.raises(ConflictError):
        await facade.start_bulk_test(tenant)
    assert await facade.bulk_test(started.id, other_tenant) is None
    done = await facade.wait_bulk_test(started.id, tenant)
    assert done is not None
    assert (done.status, done.done, done.ok, done.failed) == (BulkTestStatus.DONE, 3, 2, 1)
    assert done.summary is not None
    assert done.summary.failed_by_kind == {"auth": 1}
    assert [i.name for i in done.summary.failures] == ["c"]
    assert done.summary.slowest[0].name == "b"
    assert await facade.bulk_test(started.id, tenant) == done
    again = await facade.start_bulk_test(tenant, status="error")  # the tenant's slot is free again
    assert again.total == 1
    await facade.wait_bulk_test(again.id, tenant)


async def test_closing_the_facade_cancels_its_bulk_test(
    isolated_settings: Settings, vault_type: type[VaultType]
) -> None:
    async with ConnectorsFacade(settings=isolated_settings) as facade:
        vault = vault_type()
        facade.registry.register(vault)
        for i in range(3):
            await facade.register_connector("t1", f"slow-{i}", "vault", config={"sleep": 30})
        started = await facade.start_bulk_test("t1", concurrency=1)
        await asyncio.wait_for(vault.started.wait(), 10)
    async with ConnectorsFacade(settings=isolated_settings) as reopened:
        found = await reopened.bulk_test(started.id, "t1")
    assert found is not None
    assert (found.status, found.done, found.total) == (BulkTestStatus.CANCELLED, 0, 3)
    assert found.finished_at is not None
    assert found.summary is not None
