"""What the http probe's transport must keep, whatever client carries it (issue 15).

Written against the aiohttp-based probe before the lean client replaced it,
and kept green since: body framing (Content-Length, chunked, read to close,
HEAD, 204), the body bound, servers that close early (mid status line,
mid headers, mid body), slow servers and the timeout with the step it names,
redirects re-checked by the egress policy at every hop, TLS name
verification, SNI, ALPN and certificate details, the request the server sees
(request line, ``Host``, default headers, each auth kind, the token request).

Every peer is a small asyncio server on 127.0.0.1 written here, scripted
byte by byte for the odd behaviours; TLS uses a trustme CA made per session.
``tests/types/test_http.py`` covers the rest against httpbin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
import trustme

from connectord.network import EgressPolicy, Network
from connectord.plugin import ProbeContext, ProbeError
from connectord.types.http import MAX_BODY_BYTES, HttpConfig, HttpType

LOOPBACK = ["127.0.0.0/8", "::1/128"]
NARROW = ["127.0.0.1/32"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass
class Scripted:
    """A loopback server that records every request head and connection it gets."""

    port: int
    scheme: str
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this server."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def request_line(self, index: int = -1) -> str:
        """The request line of a request it got."""
        return self.heads[index].split(b"\r\n", 1)[0].decode()

    def headers(self, index: int = -1) -> dict[str, str]:
        """The headers of a request it got, names lowercased."""
        lines = self.heads[index].decode().split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}


def answer(response: bytes) -> Handler:
    """A handler that writes ``response`` and closes."""

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(response)
        await writer.drain()

    return handle


@contextlib.asynccontextmanager
async def scripted(
    handler: Handler | bytes, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Scripted]:
    """Serve ``handler`` (or a fixed answer) on ``host``; handlers still running are cancelled at exit."""
    handle = answer(handler) if isinstance(handler, bytes) else handler
    tasks: set[asyncio.Task[Any]] = set()
    peer = Scripted(0, "https" if tls else "http")
    if tls is not None:
        tls.sni_callback = lambda _obj, name, _ctx: peer.sni.append(name)  # type: ignore[assignment,func-returns-value]

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        peer.connections += 1
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is not None:
            peer.alpn.append(sslobj.selected_alpn_protocol())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            peer.heads.append(head)
            await handle(reader, writer, head)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(connection, host, 0, ssl=tls)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@dataclass
class Result:
    """What a probe gave: success, details (with ``error_kind`` on failure), error text, seconds."""

    ok: bool
    details: dict[str, Any]
    error: str | None
    seconds: float

    @property
    def kind(self) -> str | None:
        """The error kind, ``None`` on success."""
        return None if self.ok else str(self.details["error_kind"])


async def probe(endpoint: str, *, bound: float = 5, allow: list[str] | None = None, **config: Any) -> Result:
    """Run the http probe directly with ``bound`` as its timeout."""
    ctx = ProbeContext(
        endpoint=endpoint,
        config=HttpConfig.model_validate(config),
        timeout=bound,
        network=Network(EgressPolicy(LOOPBACK if allow is None else allow)),
    )
    start = time.monotonic()
    try:
        outcome = await HttpType().probe(ctx)
    except ProbeError as exc:
        return Result(
            False, {**exc.details, "error_kind": str(exc.kind)}, exc.message, time.monotonic() - start
        )
    return Result(True, outcome.details, None, time.monotonic() - start)


def ok_response(body: bytes = b"ok", extra: str = "") -> bytes:
    """A complete 200 answer with a Content-Length body."""
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


def redirect(location: str, status: int = 302) -> bytes:
    """A redirect answer."""
    return f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


# --- body framing and bounds ----------------------------------------------------------


async def test_content_length_body_is_read_to_its_length() -> None:
    async with scripted(ok_response(b"x" * 5000)) as peer:
        result = await probe(peer.url("/cl"))
    assert result.ok, result.error
    assert result.details["body_bytes_read"] == 5000
    assert result.details["content_type"] == "text/plain"


async def test_chunked_body_is_decoded() -> None:
    chunks = [b"a" * 10, b"b" * 4000, b"c" * 7]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    async with scripted(head + body) as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["body_bytes_read"] == 4017  # decoded: no sizes, extensions or trailer


async def test_chunked_body_in_tiny_writes() -> None:
    async def dribble(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        for i in range(0, len(data), 3):
            writer.write(data[i : i + 3])
            await writer.drain()
            await asyncio.sleep(0.001)

    async with scripted(dribble) as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["body_bytes_read"] == 11


async def test_body_without_length_is_read_until_close() -> None:
    async with scripted(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 1234) as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["body_bytes_read"] == 1234


async def test_a_large_body_is_read_only_to_the_bound() -> None:
    async with scripted(ok_response(b"y" * (MAX_BODY_BYTES * 4))) as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["body_bytes_read"] == MAX_BODY_BYTES


async def test_an_endless_body_is_cut_at_the_bound_without_waiting() -> None:
    async def endless(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # until the probe hangs up
            writer.write(b"1000\r\n" + b"e" * 0x1000 + b"\r\n")
            await writer.drain()

    async with scripted(endless) as peer:
        result = await probe(peer.url(), bound=5)
    assert result.ok, result.error
    assert result.details["body_bytes_read"] == MAX_BODY_BYTES
    assert result.seconds < 4


async def test_head_does_not_wait_for_the_body_its_length_announces() -> None:
    async def head_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/html\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)  # the connection stays open: the probe must not wait for 1000 bytes

    async with scripted(head_answer) as peer:
        result = await probe(peer.url("/h"), method="HEAD", bound=5)
    assert result.ok, result.error
    assert peer.request_line() == "HEAD /h HTTP/1.1"
    assert result.details["body_bytes_read"] == 0
    assert result.seconds < 3


async def test_no_content_has_no_body_to_wait_for() -> None:
    async def no_content(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async with scripted(no_content) as peer:
        result = await probe(peer.url(), bound=5)
    assert result.ok, result.error
    assert result.details["status_code"] == 204
    assert result.details["body_bytes_read"] == 0
    assert result.seconds < 3


async def test_http_1_0_answer_is_reported_as_such() -> None:
    async with scripted(b"HTTP/1.0 200 OK\r\nServer: old/1\r\n\r\nhello") as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["http_version"] == "HTTP/1.0"
    assert result.details["server"] == "old/1"
    assert result.details["body_bytes_read"] == 5


async def test_an_interim_answer_is_skipped_for_the_final_one() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    async with scripted(early + ok_response(b"final")) as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["status_code"] == 200
    assert result.details["body_bytes_read"] == 5


async def test_a_switch_of_protocols_is_reported_as_an_unexpected_status() -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    async with scripted(switch) as peer:
        result = await probe(peer.url(), bound=5)
    assert result.kind == "unexpected_status", result
    assert result.details["status_code"] == 101
    assert result.seconds < 3


# --- servers that close early, or answer garbage ------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"", id="no-answer"),
        pytest.param(b"HTTP/1.1 20", id="mid-status-line"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl", id="mid-headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", id="mid-body-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n0123456789", id="mid-body-chunked"
        ),
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", id="bad-header"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", id="bad-length"),
    ],
)
async def test_a_cut_or_broken_answer_is_protocol(response: bytes) -> None:
    async with scripted(response) as peer:
        result = await probe(peer.url(), bound=5)
    assert result.kind == "protocol", result
    assert result.error is not None
    assert f"127.0.0.1:{peer.port}" in result.error
    assert "did not answer valid HTTP" in result.error
    assert result.seconds < 3


async def test_a_reset_connection_is_unavailable() -> None:
    async def reset(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with scripted(reset) as peer:
        result = await probe(peer.url(), bound=5)
    assert result.kind == "unavailable", result
    assert result.error == f"cannot connect to 127.0.0.1:{peer.port}: Connection reset by peer"


async def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    # localhost is 127.0.0.1 then ::1: nothing listens on this port of 127.0.0.1
    async with scripted(ok_response(), host="::1") as peer:
        result = await probe(peer.url("/", host="localhost"))
    assert result.ok, result.error
    assert result.details["address"] == "::1"
    assert peer.headers()["host"] == f"localhost:{peer.port}"


async def test_https_to_a_closed_port_is_refused() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await probe(f"https://127.0.0.1:{port}/", tls_verify=False)
    assert result.kind == "refused", result
    assert result.seconds < 3


async def test_a_request_larger_than_the_socket_buffers_is_sent_whole() -> None:
    # 5 MB of headers (loopback buffers take about 4 MB) to a server that reads nothing for a
    # while: the sends meet full buffers, and the probe waits until it may write again.
    big = {f"X-Big-{i}": f"{i:03d}" + "b" * 7997 for i in range(640)}
    received = bytearray()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        while b"\r\n\r\n" not in received and (chunk := await reader.read(65536)):
            received.extend(chunk)
        writer.write(ok_response())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow_reader, "127.0.0.1", 0)
    async with server:
        result = await probe(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", headers=big)
    assert result.ok, result.error
    head = Scripted(0, "http", heads=[bytes(received)])
    assert {k: v for k, v in head.headers().items() if k.startswith("x-big-")} == {
        k.lower(): v for k, v in big.items()
    }


# --- slow servers and the timeout -----------------------------------------------------


async def test_a_slow_answer_within_the_bound_succeeds_and_times_first_byte() -> None:
    async def slow(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        await asyncio.sleep(0.4)
        writer.write(ok_response())
        await writer.drain()

    async with scripted(slow) as peer:
        result = await probe(peer.url(), bound=5)
    assert result.ok, result.error
    phases = result.details["phases"]
    assert phases["first_byte_ms"] >= 350
    assert {"resolve_ms", "connect_ms"} <= phases.keys()


async def test_headers_dribbled_past_the_bound_time_out_waiting_for_the_response() -> None:
    async def dribble(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"s" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    async with scripted(dribble) as peer:
        result = await probe(peer.url(), bound=1)
    assert result.kind == "timeout"
    assert result.error is not None
    assert f"no answer from 127.0.0.1:{peer.port} within 1 s (waiting for the response)" == result.error
    assert result.seconds < 1 + 2


async def test_a_body_dribbled_past_the_bound_times_out_reading_the_body() -> None:
    async def dribble(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _i in range(1000):
            writer.write(b"b")
            await writer.drain()
            await asyncio.sleep(0.1)

    async with scripted(dribble) as peer:
        result = await probe(peer.url(), bound=1)
    assert result.kind == "timeout"
    assert result.error is not None
    assert result.error.endswith("(reading the body)")
    assert "first_byte_ms" in result.details["phases"]
    assert result.seconds < 1 + 2


async def test_a_tls_handshake_that_never_comes_times_out_in_the_handshake() -> None:
    # A plain server waiting for a request head: the ClientHello never completes one.
    async with scripted(b"") as peer:
        result = await probe(peer.url().replace("http://", "https://"), bound=1, tls_verify=False)
    assert result.kind == "timeout"
    assert result.error is not None
    assert result.error.endswith("(in the TLS handshake)")
    assert peer.heads == []


# --- redirects: every hop checked by the egress policy --------------------------------


async def test_every_hop_is_checked_and_a_denied_one_is_never_connected() -> None:
    async with (
        scripted(ok_response(), host="127.0.0.2") as forbidden,
        scripted(redirect(forbidden.url("/x", host="127.0.0.2"))) as second,
        scripted(redirect(second.url("/two"))) as first,
    ):
        result = await probe(first.url("/one"), allow=NARROW)
    assert result.kind == "egress_denied"
    assert result.details["denied_address"] == "127.0.0.2"
    assert [r["url"] for r in result.details["redirects"]] == [first.url("/one"), second.url("/two")]
    assert second.connections == 1
    assert forbidden.connections == 0


async def test_a_redirect_to_a_legacy_spelling_of_a_denied_address_is_refused() -> None:
    async with scripted(ok_response(), host="127.0.0.2") as forbidden:
        decimal = f"http://2130706434:{forbidden.port}/"  # 127.0.0.2 as one number
        async with scripted(redirect(decimal)) as first:
            result = await probe(first.url(), allow=NARROW)
    assert result.kind == "egress_denied"
    assert result.details["denied_address"] == "127.0.0.2"
    assert forbidden.connections == 0


async def test_a_redirect_to_a_name_with_a_denied_address_is_refused() -> None:
    # localhost is 127.0.0.1 and ::1: with only 127.0.0.1 open, the mixed answer is refused whole
    async with (
        scripted(ok_response()) as target,
        scripted(redirect(target.url("/", host="localhost"))) as first,
    ):
        result = await probe(first.url(), allow=NARROW)
    assert result.kind == "egress_denied"
    assert result.details["denied_address"] == "::1"
    assert target.connections == 0


async def test_relative_redirects_keep_the_method_and_credentials_on_the_same_origin() -> None:
    async def hop(_: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        path = head.split(b" ", 2)[1]
        nxt = {b"/a": b"307 Temporary", b"/b": b"308 Permanent", b"/c": b"303 See Other"}.get(path)
        if nxt is None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")  # no body: a HEAD
        else:
            target = {b"/a": b"b", b"/b": b"/c", b"/c": b"/d?q=1"}[path]
            writer.write(b"HTTP/1.1 " + nxt + b"\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    auth = {"kind": "bearer", "token": "tok-rel-7781"}
    async with scripted(hop) as peer:
        result = await probe(peer.url("/a"), method="HEAD", auth=auth)
    assert result.ok, result.error
    assert [peer.request_line(i) for i in range(4)] == [
        "HEAD /a HTTP/1.1",
        "HEAD /b HTTP/1.1",
        "HEAD /c HTTP/1.1",
        "HEAD /d?q=1 HTTP/1.1",  # 303 turns GET into GET, and leaves HEAD a HEAD
    ]
    assert all(peer.headers(i)["authorization"] == "Bearer tok-rel-7781" for i in range(4))
    assert [r["status"] for r in result.details["redirects"]] == [307, 308, 303]
    assert result.details["url"] == peer.url("/d?q=1")
    assert peer.connections == 4  # a fresh connection per hop


async def test_credentials_and_query_keys_do_not_follow_to_another_origin() -> None:
    async with scripted(ok_response()) as other, scripted(redirect(other.url("/elsewhere?x=1"))) as first:
        auth = {"kind": "api_key", "name": "key", "value": "ak-q-5521", "in": "query"}
        result = await probe(
            first.url("/start?y=2"), auth=auth, secret_headers={"X-Token": "xt-5521"}, headers={"X-A": "1"}
        )
        assert result.ok, result.error
        first_head, other_head = first.headers(), other.headers()
        assert first.request_line() == "GET /start?y=2&key=ak-q-5521 HTTP/1.1"
        assert first_head["x-token"] == "xt-5521"
        assert other.request_line() == "GET /elsewhere?x=1 HTTP/1.1"
        assert "x-token" not in other_head
        assert other_head["x-a"] == "1"  # plain headers go everywhere
        assert result.details["redirects"][0]["url"] == first.url("/start?y=2")


async def test_a_redirect_out_of_http_is_protocol() -> None:
    async with scripted(redirect("ftp://127.0.0.1/file")) as peer:
        result = await probe(peer.url())
    assert result.kind == "protocol"
    assert result.error == "a redirect leads outside http and https"


async def test_a_redirect_without_location_is_the_answer() -> None:
    async with scripted(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n") as peer:
        result = await probe(peer.url())
    assert result.ok, result.error
    assert result.details["status_code"] == 302
    assert "redirects" not in result.details


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test CA for this module's TLS servers."""
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str, **cert: Any) -> ssl.SSLContext:
    """A server context with a certificate for ``names`` from ``ca`` (ALPN: h2 and http/1.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names, **cert).configure_cert(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def test_certificate_details_and_the_handshake_the_server_saw(ca: trustme.CA) -> None:
    not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=100, hours=1)).replace(microsecond=0)
    tls = server_context(ca, "localhost", "127.0.0.1", "::1", not_after=not_after)
    async with scripted(ok_response(), tls=tls) as peer:
        ca_pem = ca.cert_pem.bytes().decode()
        by_name = await probe(
            peer.url("/", host="localhost"),
            ca_pem=ca_pem,
        )
        by_address = await probe(peer.url("/"), ca_pem=ca_pem)
    assert by_name.ok, by_name.error
    assert by_address.ok, by_address.error
    details = by_name.details
    assert details["certificate_expires_at"] == not_after.isoformat()
    assert details["certificate_days_left"] == 100
    assert details["tls_version"] in {"TLSv1.2", "TLSv1.3"}
    assert details["tls_cipher"]
    assert {"connect_ms", "tls_ms", "first_byte_ms"} <= details["phases"].keys()
    assert peer.sni == ["localhost", None]  # the name by name; no SNI for an address
    assert peer.alpn == ["http/1.1", "http/1.1"]  # the probe offers only HTTP/1.1
    assert peer.headers(0)["host"] == f"localhost:{peer.port}"
    assert peer.headers(1)["host"] == f"127.0.0.1:{peer.port}"


async def test_a_certificate_for_another_name_is_refused(ca: trustme.CA) -> None:
    async with scripted(ok_response(), tls=server_context(ca, "other.test")) as peer:
        ca_pem = ca.cert_pem.bytes().decode()
        refused = await probe(peer.url(), ca_pem=ca_pem)
        by_name = await probe(peer.url("/", host="localhost"), ca_pem=ca_pem)
        unverified = await probe(peer.url(), ca_pem=ca_pem, tls_verify=False)
    for result in (refused, by_name):
        assert result.kind == "tls"
        assert result.error is not None
        assert "mismatch" in result.error
    assert unverified.ok, unverified.error
    assert unverified.details["certificate_days_left"] > 300
    assert len(peer.heads) == 1  # only the unverified test sent a request


async def test_an_expired_certificate_is_refused_and_reported_when_not_verified(ca: trustme.CA) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    tls = server_context(ca, "127.0.0.1", not_before=past - dt.timedelta(days=30), not_after=past)
    async with scripted(ok_response(), tls=tls) as peer:
        ca_pem = ca.cert_pem.bytes().decode()
        refused = await probe(peer.url(), ca_pem=ca_pem)
        unverified = await probe(peer.url(), tls_verify=False)
    assert refused.kind == "tls"
    assert refused.error is not None
    assert "expired" in refused.error
    assert unverified.ok, unverified.error
    assert unverified.details["certificate_days_left"] < 0


async def test_a_redirect_from_http_to_https_reports_the_final_tls(ca: trustme.CA) -> None:
    tls = server_context(ca, "127.0.0.1")
    async with scripted(ok_response(), tls=tls) as secure, scripted(redirect(secure.url("/s"))) as plain:
        result = await probe(plain.url(), ca_pem=ca.cert_pem.bytes().decode())
    assert result.ok, result.error
    assert result.details["url"] == secure.url("/s")
    assert result.details["tls_version"]
    assert "tls_ms" in result.details["phases"]


# --- the request the server sees ------------------------------------------------------


async def test_the_request_line_and_default_headers() -> None:
    async with scripted(ok_response()) as peer:
        result = await probe(
            peer.url("/p/a%20b"),
            health_path="/h%2Fx?x=1&y=a%20b",
            headers={"X-Trace": "t-1"},
        )
    assert result.ok, result.error
    assert peer.request_line() == "GET /p/a%20b/h%2Fx?x=1&y=a%20b HTTP/1.1"
    headers = peer.headers()
    assert headers["host"] == f"127.0.0.1:{peer.port}"
    assert headers["user-agent"] == "connectord-probe/0.1"
    assert headers["accept"] == "*/*"
    assert headers["x-trace"] == "t-1"
    assert "accept-encoding" not in headers  # bodies are counted as sent, never decompressed
    assert "cookie" not in headers
    assert "authorization" not in headers


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        (
            {"kind": "basic", "username": "ü ser", "password": "p:w-1"},
            "authorization",
            "Basic " + base64.b64encode("ü ser:p:w-1".encode()).decode(),
        ),
        ({"kind": "bearer", "token": "tok-abc"}, "authorization", "Bearer tok-abc"),
        ({"kind": "api_key", "name": "X-Key", "value": "k-1", "in": "header"}, "x-key", "k-1"),
    ],
    ids=["basic", "bearer", "api-key-header"],
)
async def test_each_auth_kind_sends_its_header(auth: dict[str, Any], header: str, value: str) -> None:
    async with scripted(ok_response()) as peer:
        result = await probe(peer.url(), auth=auth)
    assert result.ok, result.error
    assert peer.headers()[header] == value


async def test_a_secret_the_server_echoes_is_scrubbed() -> None:
    response = ok_response(extra="Server: echo tok-echo-991 " + "s" * 300 + "\r\n")
    async with scripted(response) as peer:
        result = await probe(peer.url(), auth={"kind": "bearer", "token": "tok-echo-991"})
    assert result.ok, result.error
    assert "tok-echo-991" not in result.details["server"]
    assert len(result.details["server"]) == 200


async def test_an_unexpected_status_names_the_status_and_reason() -> None:
    async with scripted(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n") as peer:
        result = await probe(peer.url())
    assert result.kind == "unexpected_status"
    assert result.error == f"127.0.0.1:{peer.port} answered 503 Service Unavailable, expected 2xx or 3xx"
    assert result.details["status_code"] == 503


async def test_the_token_request_is_a_form_post_with_the_client_credentials() -> None:
    token_body = b'{"access_token": "at-form-1", "token_type": "Bearer"}'
    token_answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(token_body),
        token_body,
    )
    forms: list[dict[str, list[str]]] = []

    async def token(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        length = int(next(v for k, v in _pairs(head) if k == "content-length"))
        forms.append(parse_qs((await reader.readexactly(length)).decode()))
        writer.write(token_answer)
        await writer.drain()

    async with scripted(token) as issuer, scripted(ok_response()) as resource:
        auth = {
            "kind": "oauth2_client_credentials",
            "token_url": issuer.url("/token"),
            "client_id": "id:1",
            "client_secret": "s&2",
            "scope": "read",
        }
        result = await probe(resource.url(), auth=auth)
        body = await probe(resource.url(), auth={**auth, "client_auth": "body"})
    assert result.ok, result.error
    assert body.ok, body.error
    assert issuer.request_line(0) == "POST /token HTTP/1.1"
    token_headers = issuer.headers(0)
    assert token_headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_headers["accept"] == "application/json"
    assert token_headers["authorization"] == "Basic " + base64.b64encode(b"id%3A1:s%262").decode()
    assert forms[0] == {"grant_type": ["client_credentials"], "scope": ["read"]}
    assert forms[1] == {
        "grant_type": ["client_credentials"],
        "scope": ["read"],
        "client_id": ["id:1"],
        "client_secret": ["s&2"],
    }
    assert resource.headers(0)["authorization"] == "Bearer at-form-1"
    assert "auth_ms" in result.details["phases"]


def _pairs(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode().split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]
