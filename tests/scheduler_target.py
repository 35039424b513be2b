"""A loopback HTTP target for the scheduler's tests: it counts the requests to each path,
when they came, how many were under way at once (overall and per first path segment),
and the Authorization headers it was sent."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class CountingTarget:
    """Answers every request ``200 ok`` after ``delay`` seconds, on 127.0.0.1."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        #: Arrival times (``time.monotonic()``) of the requests to each path.
        self.hits: defaultdict[str, list[float]] = defaultdict(list)
        self.authorizations: set[str] = set()
        self.active: Counter[str] = Counter()
        self.max_active: Counter[str] = Counter()
        self.max_total = 0
        self._total = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()
        # Held while a request is counted: another thread may read the counts (snapshot).
        self._lock = threading.Lock()
        self.port = 0

    def url(self, path: str) -> str:
        """The URL of ``path`` (``group/name``) on this target."""
        return f"http://127.0.0.1:{self.port}/{path}"

    async def start(self) -> CountingTarget:
        """Listen on a free port."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Answer(self), "127.0.0.1", 0, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        if self._server is not None:
            self._server.close()
            for transport in list(self._transports):
                transport.close()
            await self._server.wait_closed()

    def gaps(self, path: str) -> list[float]:
        """Seconds between consecutive requests to ``path``."""
        times = self.hits[path]
        return [b - a for a, b in itertools.pairwise(times)]

    def snapshot(self) -> dict[str, list[float]]:
        """A copy of :attr:`hits`, safe to take from another thread."""
        with self._lock:
            return {path: list(times) for path, times in self.hits.items()}

    def _begin(self, path: str, authorization: str | None) -> None:
        with self._lock:
            self.hits[path].append(time.monotonic())
        if authorization:
            self.authorizations.add(authorization)
        group = path.split("/", 1)[0]
        self.active[group] += 1
        self.max_active[group] = max(self.max_active[group], self.active[group])
        self._total += 1
        self.max_total = max(self.max_total, self._total)

    def _end(self, path: str) -> None:
        self.active[path.split("/", 1)[0]] -= 1
        self._total -= 1


class _Answer(asyncio.Protocol):
    def __init__(self, target: CountingTarget) -> None:
        self.target = target
        self.seen = b""
        self.path: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.target._transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.target._transports.discard(self.transport)
        if self.path is not None:
            self.target._end(self.path)
            self.path = None

    def data_received(self, data: bytes) -> None:
        self.seen += data
        if self.path is not None or b"\r\n\r\n" not in self.seen:
            return
        head = self.seen.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        self.path = head[0].split(" ")[1].lstrip("/")
        headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        self.target._begin(self.path, headers.get("Authorization"))
        if self.target.delay:
            asyncio.get_running_loop().call_later(self.target.delay, self._answer)
        else:
            self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)
            self.transport.close()


@contextmanager
def target_in_thread(delay: float = 0.0) -> Iterator[CountingTarget]:
    """A :class:`CountingTarget` on an event loop of its own thread, for tests that block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="counting-target", daemon=True)
    thread.start()
    target = asyncio.run_coroutine_threadsafe(CountingTarget(delay).start(), loop).result(10)
    try:
        yield target
    finally:
        asyncio.run_coroutine_threadsafe(target.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
