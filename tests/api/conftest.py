"""The REST API over real HTTP: a ``connectord serve`` process per backend, started here.

The store is prepared in the test process (an operator tenant with an ``admin``
key), then the server runs as a subprocess on a free loopback port with JSON
logs written to a file the tests read. Each test makes its own tenants through
``POST /api/v1/tenants``, so tests do not depend on each other.

Every response any test receives passes through :func:`_check_response`: no
5xx, an ``X-Request-Id`` on each, and every error a complete problem document.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectord.admin import SCOPES, Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

PROBLEM_TYPE_PREFIX = "urn:connectord:problem:"
SERVE = "from connectord.api.server import serve; from connectord.settings import Settings; serve(Settings())"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def free_port() -> int:
    """A loopback TCP port nobody listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_response(response: httpx.Response) -> None:
    """Invariants of every answer: no server error, a request id, problems well formed."""
    response.read()
    where = f"{response.request.method} {response.request.url.raw_path.decode()}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:500]}"
    assert response.headers.get("x-request-id"), f"{where} has no X-Request-Id"
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", where
        body = response.json()
        assert body["type"].startswith(PROBLEM_TYPE_PREFIX), body
        assert isinstance(body["title"], str), body
        assert body["title"], body
        assert body["status"] == response.status_code, body
        assert isinstance(body["detail"], str), body
        assert body["detail"], body
        assert "Traceback" not in response.text


@dataclass
class Server:
    """A running ``connectord serve`` process and how to reach it."""

    backend: str
    base_url: str
    admin_key: str
    log_path: Path
    settings: Settings
    process: subprocess.Popen[bytes]
    _clients: list[httpx.Client] = field(default_factory=list)
    _admin: httpx.Client | None = None

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client on this server, with ``Authorization: Bearer key`` when given."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers |= kwargs.pop("headers", {})
        http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=30,
            event_hooks={"response": [_check_response]},
            **kwargs,
        )
        self._clients.append(http)
        return http

    def admin(self) -> httpx.Client:
        """A client with the operator's admin key."""
        if self._admin is None:
            self._admin = self.client(self.admin_key)
        return self._admin

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> list[str]:
        """The log lines containing ``needle``, waiting for the first (the access log
        line is written just after the response is sent)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log_text().splitlines() if needle in line]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def close_clients(self) -> None:
        """Close every client made by :meth:`client`."""
        for http in self._clients:
            http.close()
        self._clients.clear()
        self._admin = None


@dataclass
class Tenant:
    """A tenant made through the API, with its first key (read, write, test)."""

    id: str
    name: str
    key_id: str
    key: str
    http: httpx.Client


async def _make_operator(settings: Settings) -> str:
    async with ConnectorsFacade(settings=settings) as facade:
        admin = Admin(facade)
        tenant, _ = await admin.create_tenant(f"operator-{secrets.token_hex(4)}", actor="tests")
        key = await admin.create_key(tenant.id, name="admin", scopes=SCOPES, actor="tests")
        return key.api_key


def _backend_settings(
    backend: str, data_dir: Path, request: pytest.FixtureRequest
) -> tuple[Settings, dict[str, str]]:
    env = {"CONNECTORD_DATA_DIR": str(data_dir)}
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        key = request.getfixturevalue("secret_key_value")
        env |= {"CONNECTORD_DATABASE_URL": url, "CONNECTORD_SECRET_KEY": key}
        return Settings(data_dir=data_dir, database_url=url, secret_key=key), env
    return Settings(data_dir=data_dir), env


@contextlib.contextmanager
def run_server(
    backend: str, data_dir: Path, request: pytest.FixtureRequest, **extra_env: str
) -> Iterator[Server]:
    """Prepare the store, start ``serve`` on a free port, wait for /healthz; stop it by PID."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings, env = _backend_settings(backend, data_dir, request)
    admin_key = asyncio.run(_make_operator(settings))
    port = free_port()
    env |= {
        "CONNECTORD_HOST": "127.0.0.1",
        "CONNECTORD_PORT": str(port),
        "CONNECTORD_LOG_FORMAT": "json",
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_PROBE_TIMEOUT": "5",
        # A scheduled check at a random moment would change what tests observe;
        # the scheduler's own tests turn it on (tests/test_scheduler_replicas.py).
        "CONNECTORD_SCHEDULER": "off",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE], env=base_env | env, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(backend, f"http://127.0.0.1:{port}", admin_key, log_path, settings, process)
    try:
        _wait_healthy(server)
        yield server
    finally:
        server.close_clients()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_healthy(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.log_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"the server did not answer /healthz within {timeout} s:\n{server.log_text()}")


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API server on one backend, shared by the session (tests use their own tenants)."""
    backend = str(request.param)
    with run_server(backend, tmp_path_factory.mktemp(f"api-{backend}"), request) as running:
        yield running


def create_tenant(server: Server, prefix: str = "t") -> Tenant:
    """A fresh tenant through ``POST /api/v1/tenants``."""
    name = f"{prefix}-{secrets.token_hex(6)}"
    response = server.admin().post("/api/v1/tenants", json={"name": name})
    assert response.status_code == 201, response.text
    body = response.json()
    return Tenant(body["tenant_id"], name, body["key_id"], body["api_key"], server.client(body["api_key"]))


def create_key(server: Server, tenant: Tenant, scopes: list[str]) -> str:
    """A new key of the tenant with these scopes."""
    response = server.admin().post(
        f"/api/v1/tenants/{tenant.id}/keys", json={"name": "extra", "scopes": scopes}
    )
    assert response.status_code == 201, response.text
    assert response.json()["scopes"] == scopes
    return str(response.json()["api_key"])


@pytest.fixture
def api_tenant(server: Server) -> Tenant:
    """A fresh tenant on the test's server."""
    return create_tenant(server, "a")


@pytest.fixture
def other_api_tenant(server: Server) -> Tenant:
    """A second fresh tenant on the test's server."""
    return create_tenant(server, "b")


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names for connectors."""
    return lambda prefix="c": f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel completes them; nothing is read)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A loopback port with no listener: connecting is refused."""
    return free_port()


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is a problem document of that status (and slug); its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if slug is not None:
        assert body["type"] == PROBLEM_TYPE_PREFIX + slug, body
    return body


def register(http: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    """Register a connector (``custom`` to 127.0.0.1:1 unless told) and return it."""
    body = {"name": name, "connector_type": "custom", "endpoint": "127.0.0.1:1", **fields}
    response = http.post("/api/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
