"""uvicorn's HTTP protocol with the limits it lacks: a slow or idle client cannot hold a
connection (issue 9, item 10).

uvicorn times out idle keep-alive connections only after a first response: a
client that connects and sends nothing, or sends its headers a byte at a time,
kept its connection (and a file descriptor) for ever; 300 of them exhausted
``ulimit -n 256``. This protocol adds:

- a **header timeout**: from the connection (or the first byte of the next
  request) to the end of the headers;
- a **body timeout**: from the end of the headers to the end of the body;
- a **connection cap**: a connection beyond ``CONNECTORD_MAX_CONNECTIONS`` is
  answered 503 and closed at once, before it costs more than its accept.

A request that times out is answered ``408 Request Timeout`` (if no response
has started) and its connection closed. The idle time between requests is
uvicorn's own keep-alive timeout (``CONNECTORD_KEEP_ALIVE_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from connectord.settings import Settings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n"
)


@functools.cache
def _limits() -> tuple[float, float, int]:
    # Read from the environment, as the app is: `connectord serve` exports its settings
    # there, so every worker process reads the same values.
    settings = Settings()
    return settings.header_timeout, settings.body_timeout, settings.max_connections


class GuardedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with header and body read timeouts and a connection cap.

    The parser's callbacks only note the phase a request is in; the timer is set once
    after each read, from the phase the read left it in. A request that arrives whole in
    one read (nearly every one) thus costs no timer at all, where arming a timer at each
    phase cost three timer operations per request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout, self.max_connections = _limits()
        self._read_timer: asyncio.TimerHandle | None = None
        self._phase = _IDLE
        self._phase_changed = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_FULL)
            transport.close()
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        finally:
            if self._phase_changed:
                self._phase_changed = False
                if self._phase is _HEADERS:
                    self._arm(self.header_timeout)
                elif self._phase is _BODY:
                    self._arm(self.body_timeout)
                else:
                    self._disarm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._enter(_HEADERS)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._enter(_BODY)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._enter(_IDLE)

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._phase_changed = True

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


#: The phases of reading a request: the header timeout runs in the first, the body
#: timeout in the second, none between requests (uvicorn's keep-alive timeout does).
_HEADERS, _BODY, _IDLE = "headers", "body", "idle"
