"""Slow and idle clients cannot hold the server's connections (issue 9, item 10).

A real ``connectord serve`` with short limits: clients that send nothing, or their
headers a byte at a time, or half a body, are answered 408 and closed after the
timeout; an idle keep-alive connection is closed; beyond the connection cap a
connection is answered 503 at once; and ``/healthz`` keeps answering throughout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cli_server import ServerProcess, serve

pytestmark = pytest.mark.slow

LIMITS = {
    "CONNECTORD_HEADER_TIMEOUT": "1",
    "CONNECTORD_BODY_TIMEOUT": "1",
    "CONNECTORD_KEEP_ALIVE_TIMEOUT": "1",
    "CONNECTORD_MAX_CONNECTIONS": "60",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve(tmp_path_factory.mktemp("slow"), LIMITS) as proc:
        yield proc


def _connect(server: ServerProcess) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.settimeout(10)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def _healthz_ok(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_silent_and_byte_by_byte_clients_are_timed_out(server: ServerProcess) -> None:
    silent = [_connect(server) for _ in range(20)]
    dripping = [_connect(server) for _ in range(20)]
    start = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    for i in range(4):  # a byte per socket every 0.4 s: never the end of the headers in time
        for sock in dripping:
            sock.send(request[i : i + 1])
        _healthz_ok(server)
        time.sleep(0.4)
    answers = [_answer(sock) for sock in silent + dripping]
    elapsed = time.monotonic() - start
    for sock in silent + dripping:
        sock.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), set(answers)
    assert elapsed < 8  # closed by the 1 s timeouts, not by the client
    _healthz_ok(server)


def test_half_a_body_is_timed_out(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.send(b"POST /api/v1/connectors HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert _answer(sock).startswith(b"HTTP/1.1 408")


def test_an_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        answer = _answer(sock)  # the response, then the close after the idle timeout
        assert answer.startswith(b"HTTP/1.1 200")
        assert time.monotonic() - start < 5


def test_connections_beyond_the_cap_are_answered_503(server: ServerProcess) -> None:
    held = [_connect(server) for _ in range(70)]
    try:
        time.sleep(0.3)
        refused = []
        for sock in held:
            sock.settimeout(0.5)
            try:
                refused.append(sock.recv(64).startswith(b"HTTP/1.1 503"))
            except TimeoutError:
                refused.append(False)
        assert sum(refused) >= 10, sum(refused)  # 70 opened, 60 allowed
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    _healthz_ok(server)
