"""A real webhook receiver on loopback for the webhook and event tests: a threaded HTTP server
that records every request and answers what the test scripts (a status code, after a delay
if the script sleeps). It runs in its own threads, so sync and async tests alike can use it,
and a ``connectord serve`` subprocess can deliver to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Received:
    """One request the receiver got: its headers (lower-case names), body and arrival time."""

    headers: dict[str, str]
    body: str
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body."""
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header: the event's id, the same on every retry."""
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict[str, Any]:
        """The payload, after the spec's reference verification of the signature."""
        data: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return data


Answer = Callable[[Received, int], int]


class Receiver:
    """Records each POST; ``answer(received, n)`` (n counts requests from 1) gives the status."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.requests: list[Received] = []
        self.answer: Answer = answer or (lambda received, n: 200)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode()
                received = Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                with receiver._lock:
                    receiver.requests.append(received)
                    n = len(receiver.requests)
                status = receiver.answer(received, n)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The loopback port it listens on."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """The URL to register as a webhook."""
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Received]:
        """A copy of the requests so far."""
        with self._lock:
            return list(self.requests)

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 15.0) -> list[Received]:
        """The requests, once ``done(requests)`` holds; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {[r.payload['type'] for r in got]} only")
            time.sleep(0.05)


def first_per_event(requests: list[Received]) -> list[Received]:
    """The first request of each event (a retry repeats the ``webhook-id``), in arrival order."""
    seen: set[str] = set()
    firsts = []
    for received in requests:
        if received.webhook_id not in seen:
            seen.add(received.webhook_id)
            firsts.append(received)
    return firsts
