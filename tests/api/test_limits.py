"""Per-tenant test limits: a rate (429 + Retry-After past it) and a concurrency cap.

These run on a server of their own with tiny limits, on SQLite only: the limiter
lives in the API process (per replica) and never touches the store, so the
backend changes nothing here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Server, Tenant, assert_problem, create_tenant, register, run_server

C = "/api/v1/connectors"
RATE = 3


@pytest.fixture(scope="module")
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server allowing 3 tests a minute and 1 at a time per tenant."""
    with run_server(
        "sqlite",
        tmp_path_factory.mktemp("api-limits"),
        request,
        CONNECTORD_TEST_RATE_PER_MINUTE=str(RATE),
        CONNECTORD_TEST_CONCURRENCY="1",
    ) as server:
        yield server


@pytest.fixture
def silent_listener() -> Iterator[tuple[int, threading.Event]]:
    """A loopback port that accepts connections and never says a word; the event is set
    when the first connection arrives."""
    arrived = threading.Event()
    held: list[socket.socket] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            held.append(conn)
            arrived.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1]), arrived
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        sock.close()


def test_the_test_rate_is_limited_per_tenant(limited: Server, closed_port: int) -> None:
    tenant = create_tenant(limited, "rate")
    other = create_tenant(limited, "rate")
    created = register(tenant.http, "r", endpoint=f"127.0.0.1:{closed_port}")
    for _ in range(RATE):
        assert tenant.http.post(f"{C}/{created['id']}/test").status_code == 200

    response = tenant.http.post(f"{C}/{created['id']}/test")
    problem = assert_problem(response, 429, "rate-limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert 0 < problem["retry_after"] <= retry_after
    unsaved = {"name": "u", "connector_type": "custom", "endpoint": f"127.0.0.1:{closed_port}"}
    assert_problem(tenant.http.post(f"{C}/test", json=unsaved), 429, "rate-limited")
    history = tenant.http.get(f"{C}/{created['id']}/history").json()["items"]
    assert len(history) == RATE  # the refused test did not run

    assert tenant.http.get(C).status_code == 200  # only tests are limited
    mine = register(other.http, "r", endpoint=f"127.0.0.1:{closed_port}")
    assert other.http.post(f"{C}/{mine['id']}/test").status_code == 200  # another tenant is not


def test_tests_at_once_are_limited_per_tenant(
    limited: Server, closed_port: int, silent_listener: tuple[int, threading.Event]
) -> None:
    port, arrived = silent_listener
    tenant: Tenant = create_tenant(limited, "conc")
    other: Tenant = create_tenant(limited, "conc")
    # A TLS handshake with a peer that never answers: the test runs until its timeout.
    hanging = register(tenant.http, "slow", endpoint=f"127.0.0.1:{port}", config={"tls": True, "timeout": 3})
    quick = register(tenant.http, "quick", endpoint=f"127.0.0.1:{closed_port}")

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        slow = pool.submit(tenant.http.post, f"{C}/{hanging['id']}/test")
        assert arrived.wait(10), "the hanging test never connected"
        response = tenant.http.post(f"{C}/{quick['id']}/test")
        assert_problem(response, 429, "rate-limited")
        assert int(response.headers["retry-after"]) >= 1
        theirs = register(other.http, "quick", endpoint=f"127.0.0.1:{closed_port}")
        assert other.http.post(f"{C}/{theirs['id']}/test").status_code == 200
        result = slow.result(timeout=30).json()
        elapsed = time.monotonic() - started

    assert result["success"] is False
    assert result["details"]["error_kind"] == "timeout"
    assert elapsed < 3 + 5, "the test outlived its timeout"
    assert tenant.http.post(f"{C}/{quick['id']}/test").status_code == 200  # the slot is free again
