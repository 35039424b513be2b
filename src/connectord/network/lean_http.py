"""One HTTP/1.1 request on one fresh connection, parsed with httptools.

The http probe's transport (``docs/http-probe.md``). The caller resolves the
host through the egress policy and hands :func:`fetch` the checked
destinations; :func:`fetch` connects to those addresses only (one after
another until one accepts), never to the name, so nothing is looked up again.
The answer is parsed by httptools (llhttp, the parser of Node.js) in callbacks
as the bytes come; the body is counted (and kept when asked) up to a bound,
then the connection is dropped.

Plain HTTP runs on the bare non-blocking socket with the event loop's reader
and writer callbacks (no transport, no stream): the request is sent as soon
as the connect finishes, which on loopback is before ``connect`` returns, so
a probe costs one socket, one ``send``, a ``recv`` per readable event and one
wake-up of the waiting task. That makes it cheaper than a bare
asyncio-streams loop (``bench/probes.py``). HTTPS uses asyncio's TLS
transport on the connected socket, which verifies the name
(``server_hostname``) with the caller's context.

Failures are :class:`TransportError`: an error kind and a text naming the
server (``where``), never a class name or a trace.
"""

from __future__ import annotations

import asyncio
import errno
import os
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
    """Parses the answer and resolves :attr:`done` once; as a TLS transport's protocol it
    also sends the request when the handshake is done."""

    def __init__(self, request: Request, marks: Marks, where: str, done: asyncio.Future[Response]) -> None:
        self.request = request
        self._marks = marks
        self._where = where
        self.done = done
        self._state = _State()
        self._parser = httptools.HttpResponseParser(self)

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request.data)

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
        redirect = status in self.request.redirects and "location" in state.headers
        if self.request.head or status in (204, 304) or redirect:
            self._finish()

    def on_body(self, chunk: bytes) -> None:
        state, limit = self._state, self.request.body_limit
        take = chunk if state.size + len(chunk) <= limit else chunk[: limit - state.size]
        state.size += len(take)
        if self.request.keep_body:
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


#: The most one ``recv`` takes: the body bound and the headers fit in a few.
_RECV = 64 * 1024


def _socket(destination: Destination) -> socket.socket:
    family = socket.AF_INET6 if ":" in destination.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # A request that needs several sends must not wait for an ACK between them (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # the writer may fire again before the waiting task runs
        ready.set_result(None)


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` can be written; the connect's failure (``SO_ERROR``) if it failed."""
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _resolve, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))  # the errno's own subclass (ConnectionRefusedError...)


async def _send(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes) -> None:
    """Send all of ``data`` on a socket whose connect was started; OSError if it failed."""
    view = memoryview(data)
    while view:
        try:
            # Before the handshake ends this is EAGAIN; a refused connect raises its error here.
            view = view[sock.send(view) :]
        except (BlockingIOError, InterruptedError):
            await _writable(loop, sock)


async def _connect(
    loop: asyncio.AbstractEventLoop, destination: Destination, marks: Marks, data: bytes | None
) -> socket.socket:
    """A socket connected to ``destination`` (and ``data`` sent on it, when given)."""
    sock = _socket(destination)
    try:
        marks.connect_start = marks.connect_start or time.perf_counter()
        code = sock.connect_ex((destination.address, destination.port))
        # In progress is the rule: the first send (or writability) says when it is done.
        if code not in (0, errno.EINPROGRESS, errno.EINTR):
            raise OSError(code, os.strerror(code))
        if data is None:
            await _writable(loop, sock)
        else:
            await _send(loop, sock, data)
    except BaseException:
        sock.close()
        raise
    marks.tcp_end = time.perf_counter()
    return sock


async def _first_accepting(
    loop: asyncio.AbstractEventLoop,
    destinations: Sequence[Destination],
    marks: Marks,
    where: str,
    data: bytes | None,
) -> tuple[socket.socket, Destination]:
    """A connection to the first checked address that accepts (the last failure if none does)."""
    failure: OSError | None = None
    for destination in destinations:
        try:
            return await _connect(loop, destination, marks, data), destination
        except OSError as exc:  # refused, unreachable: the next address may answer
            failure = exc
    if failure is None:
        raise TransportError(ErrorKind.UNAVAILABLE, f"cannot connect to {where}: no address")
    raise _connect_error(failure, where) from None


class _Reader:
    """Feeds what a bare socket receives to the client, from the loop's reader callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, client: _Client) -> None:
        self._loop = loop
        self._sock = sock
        self._client = client
        self._fd = sock.fileno()
        self.reading = True
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        client = self._client
        try:
            data = self._sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            client.connection_lost(exc)
        else:
            if data:
                client.data_received(data)
            else:
                client.connection_lost(None)
        if client.done.done():
            self.stop()

    def stop(self) -> None:
        """No more callbacks (once the answer is known, or the wait given up)."""
        if self.reading:
            self.reading = False
            self._loop.remove_reader(self._fd)


async def _plain(
    loop: asyncio.AbstractEventLoop,
    destinations: Sequence[Destination],
    client: _Client,
    marks: Marks,
    where: str,
) -> Response:
    sock, destination = await _first_accepting(loop, destinations, marks, where, client.request.data)
    marks.ready = marks.tcp_end
    marks.peer = destination.address
    reader = _Reader(loop, sock, client)
    try:
        return await client.done
    finally:
        reader.stop()
        # Never reused. Closing with unread bytes (a body past the bound) resets the connection.
        sock.close()


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
    if tls is None:
        return await _plain(loop, destinations, client, marks, where)
    sock, _ = await _first_accepting(loop, destinations, marks, where, None)
    try:
        # The TLS handshake, on the one connection TCP gave: its failure is final.
        transport, _ = await loop.create_connection(
            lambda: client, sock=sock, ssl=tls, server_hostname=server_hostname
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
        # TLS is never reused either: no close_notify exchange to wait for, drop it.
        transport.abort()
