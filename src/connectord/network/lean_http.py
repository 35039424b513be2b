"""One HTTP/1.1 request on one fresh connection: asyncio transports and httptools.

The http probe's transport (``docs/http-probe.md``). The caller resolves the
host through the egress policy and hands :func:`fetch` the checked
destinations; :func:`fetch` connects to those addresses only (one after
another until one accepts), never to the name, so nothing is looked up again.
TLS verifies the name (``server_hostname``) with the caller's context. The
answer is parsed by httptools (llhttp, the parser of Node.js): a protocol, not
a stream, so a request costs one connect, one write and the callbacks of the
bytes that come back. The body is counted (and kept when asked) up to a bound,
then the connection is dropped.

Failures are :class:`TransportError`: an error kind and a text naming the
server (``where``), never a class name or a trace.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httptools

from connectord.model import ErrorKind
from connectord.network.egress import Destination
from connectord.network.failures import error_text

_CUT = "did not answer valid HTTP (the connection was closed or the answer cut short)"


class TransportError(Exception):
    """A connection or HTTP failure: its kind, and a text a tenant can act on."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Marks(Protocol):
    """Where :func:`fetch` notes its timestamps (``time.perf_counter``) and what it connected to."""

    connect_start: float
    tcp_end: float
    ready: float
    first_byte: float
    ssl_object: ssl.SSLObject | None
    peer: str | None


@dataclass(slots=True)
class Response:
    """A parsed answer: status, reason, version, headers (lowercased names, first value wins),
    the body read (when kept) and how many body bytes were read."""

    status: int
    reason: str
    version: str
    headers: dict[str, str]
    body: bytes
    body_bytes: int


@dataclass(slots=True)
class Request:
    """What to send and how much of the answer to read."""

    #: The whole request (line, headers, body), ready for the wire.
    data: bytes
    #: A HEAD: the answer ends with its headers, whatever length they announce.
    head: bool
    #: Body bytes to read at most; the connection is dropped after that many.
    body_limit: int
    #: Keep the body (a token response), or only count it (a probe).
    keep_body: bool = False
    #: Redirect statuses being followed: such an answer with a Location ends at its headers.
    redirects: frozenset[int] = frozenset()


@dataclass(slots=True)
class _State:
    """The parser's view of the answer so far."""

    reason: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    headers_done: bool = False
    #: Neither Content-Length nor chunked: the body ends when the server closes.
    until_close: bool = False


class _Client(asyncio.Protocol):
    """Sends the request once connected, parses the answer, resolves :attr:`done` once."""

    def __init__(self, request: Request, marks: Marks, where: str, done: asyncio.Future[Response]) -> None:
        self._request = request
        self._marks = marks
        self._where = where
        self.done = done
        self._state = _State()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request.data)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish()  # a 101 ends the HTTP part: report it as the answer
        except httptools.HttpParserError as exc:
            detail = str(exc) or "malformed answer"
            self._fail(ErrorKind.PROTOCOL, f"{self._where} did not answer valid HTTP: {detail[:120]}")

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost decides what the answer was

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self._state.headers_done and self._state.until_close and exc is None:
            self._finish()
        elif isinstance(exc, ConnectionResetError):
            self._fail(ErrorKind.UNAVAILABLE, error_text(exc, ErrorKind.UNAVAILABLE, self._where))
        else:
            self._fail(ErrorKind.PROTOCOL, f"{self._where} {_CUT}")

    # --- httptools callbacks ------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._state.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        self._state.headers.setdefault(key, value.decode("utf-8", "replace"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        state = self._state
        state.headers_done = True
        self._marks.first_byte = time.perf_counter()
        chunked = "chunked" in state.headers.get("transfer-encoding", "").lower()
        state.until_close = not chunked and "content-length" not in state.headers
        redirect = status in self._request.redirects and "location" in state.headers
        if self._request.head or status in (204, 304) or redirect:
            self._finish()

    def on_body(self, chunk: bytes) -> None:
        state, limit = self._state, self._request.body_limit
        take = chunk if state.size + len(chunk) <= limit else chunk[: limit - state.size]
        state.size += len(take)
        if self._request.keep_body:
            state.body.append(take)
        if state.size >= limit:
            self._finish()

    def on_message_complete(self) -> None:
        if self._state.headers_done:
            self._finish()
        else:  # the end of an interim answer: start over for the real one
            self._state = _State()

    # --- outcome ------------------------------------------------------------------------

    def _finish(self) -> None:
        if self.done.done():
            return
        state = self._state
        self.done.set_result(
            Response(
                status=self._parser.get_status_code(),
                reason=state.reason.decode("utf-8", "replace"),
                version=self._parser.get_http_version(),
                headers=state.headers,
                body=b"".join(state.body),
                body_bytes=state.size,
            )
        )

    def _fail(self, kind: ErrorKind, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(TransportError(kind, message))


def _connect_error(exc: OSError, where: str) -> TransportError:
    """A failed TCP connect or TLS handshake, named as every probe names it."""
    if isinstance(exc, ssl.SSLError):
        kind = ErrorKind.TLS
    elif isinstance(exc, ConnectionRefusedError):
        kind = ErrorKind.REFUSED
    elif isinstance(exc, TimeoutError):  # the OS gave up connecting (ETIMEDOUT)
        kind = ErrorKind.TIMEOUT
    else:
        kind = ErrorKind.UNAVAILABLE
    return TransportError(kind, error_text(exc, kind, where))


async def _tcp(destinations: Sequence[Destination], marks: Marks, where: str) -> socket.socket:
    """A TCP connection to the first checked address that accepts (the last failure if none does)."""
    loop = asyncio.get_running_loop()
    failure: OSError | None = None
    for destination in destinations:
        family = socket.AF_INET6 if ":" in destination.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            marks.connect_start = marks.connect_start or time.perf_counter()
            await loop.sock_connect(sock, (destination.address, destination.port))
        except OSError as exc:  # refused, unreachable: the next address may answer
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        marks.tcp_end = time.perf_counter()
        return sock
    if failure is None:
        raise TransportError(ErrorKind.UNAVAILABLE, f"cannot connect to {where}: no address")
    raise _connect_error(failure, where) from None


async def fetch(
    destinations: Sequence[Destination],
    request: Request,
    marks: Marks,
    *,
    where: str,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Response:
    """Send ``request`` to the first checked destination that accepts, and read its answer.

    ``tls`` (with ``server_hostname``, the name the certificate must carry)
    makes it HTTPS. The connection is closed when the answer is read or the
    body bound is reached, and dropped on any failure or cancellation (the
    caller's timeout). Raises :class:`TransportError`.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Response] = loop.create_future()
    client = _Client(request, marks, where, done)
    sock = await _tcp(destinations, marks, where)
    try:
        # The TLS handshake, on the one connection TCP gave: its failure is final.
        transport, _ = await loop.create_connection(
            lambda: client,
            sock=sock,
            ssl=tls,
            server_hostname=server_hostname if tls is not None else None,
        )
    except OSError as exc:
        sock.close()
        raise _connect_error(exc, where) from None
    except BaseException:
        sock.close()
        raise
    assert isinstance(transport, asyncio.Transport)
    marks.ready = time.perf_counter()
    marks.ssl_object = transport.get_extra_info("ssl_object")
    peer = transport.get_extra_info("peername")
    marks.peer = str(peer[0]) if peer else None
    try:
        return await done
    finally:
        # Never reused: a clean close when the answer was read whole, else drop it.
        if done.done() and not done.cancelled() and done.exception() is None and not tls:
            transport.close()
        else:
            transport.abort()
