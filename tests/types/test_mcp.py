"""The mcp probe against real servers built with the SDK's ``MCPServer``.

Servers (``peers_mcp.py``, each a subprocess on a free loopback port): the full
server over streamable HTTP and over legacy SSE, and a read-only server behind a
bearer-token middleware served over HTTPS (a trustme certificate for
``localhost``). A standard-library ``http.server`` plays the non-MCP server.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pydantic
import pytest
import trustme
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, METHOD_NOT_FOUND, REQUEST_TIMEOUT

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind
from connectord.network import EgressPolicy, Network
from connectord.plugin import ProbeContext, ProbeError, ProbeOutcome
from connectord.settings import Settings
from connectord.types.mcp import STDIO_REFUSED, McpConfig, McpType, Traffic, map_mcp_error
from tests.types import peers_mcp
from tests.types.peers_sql import black_hole, free_port

LOOPBACK = ["127.0.0.0/8", "::1/128"]
TOKEN = "tok-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def mcp_url() -> Iterator[str]:
    """The full test server over streamable HTTP."""
    peer = peers_mcp.start("streamable-http", free_port(), "/mcp")
    yield peer.url
    peer.stop()


@pytest.fixture(scope="session")
def sse_url() -> Iterator[str]:
    """The full test server over legacy SSE."""
    peer = peers_mcp.start("sse", free_port(), "/sse")
    yield peer.url
    peer.stop()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The CA of the HTTPS server's certificate (issued for ``localhost`` only)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def auth_port(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The read-only server that requires ``Authorization: Bearer TOKEN``, over HTTPS."""
    folder = tmp_path_factory.mktemp("mcp-tls")
    cert = tls_ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    env = {
        "MCP_TEST_TOKEN": TOKEN,
        "MCP_TEST_CERT": str(folder / "cert.pem"),
        "MCP_TEST_KEY": str(folder / "key.pem"),
    }
    peer = peers_mcp.start("auth", free_port(), "/mcp", env)
    yield peer.port
    peer.stop()


@pytest.fixture(scope="session")
def plain_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standard-library HTTP file server: speaks HTTP, not MCP."""
    port = free_port()
    folder = tmp_path_factory.mktemp("www")
    (folder / "index.html").write_text("<h1>hello</h1>")
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        peers_mcp.wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)


async def probe(
    endpoint: str,
    config: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - the probe's bound, handed to ProbeContext
    allow: list[str] = LOOPBACK,
) -> ProbeOutcome:
    """Run the mcp probe directly (bounded by ``wait_for`` as the facade does)."""
    ctx = ProbeContext(
        endpoint, McpConfig.model_validate(config or {}), timeout, Network(EgressPolicy(allow))
    )
    return await asyncio.wait_for(McpType().probe(ctx), timeout + 5)


async def probe_error(endpoint: str, config: dict[str, Any] | None = None, **kw: Any) -> ProbeError:
    """The :class:`ProbeError` a probe raises."""
    with pytest.raises(ProbeError) as info:
        await probe(endpoint, config, **kw)
    return info.value


# --- against real servers -----------------------------------------------------------------


async def test_tools_are_listed_and_counted(mcp_url: str) -> None:
    outcome = await probe(mcp_url)
    details = outcome.details
    assert details["server_name"] == "connectord-test-server"
    assert details["protocol_version"]
    assert details["tool_count"] == 3
    assert sorted(details["tool_names"]) == ["add", "clock", "remember"]
    assert details["resource_count"] == 1
    assert details["prompt_count"] == 0
    assert details["transport"] == "streamable_http"
    assert set(details["phases"]) == {"resolve_ms", "connect_ms", "list_ms"}
    assert outcome.capabilities == ["read", "write", "query"]


async def test_legacy_sse_transport(sse_url: str) -> None:
    outcome = await probe(sse_url, {"transport": "sse"})
    assert outcome.details["transport"] == "sse"
    assert outcome.details["tool_count"] == 3


async def test_auth_header_is_required_and_honoured(
    auth_port: int, tls_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"https://localhost:{auth_port}/mcp"
    ca = {"ca_pem": tls_ca.cert_pem.bytes().decode()}
    missing = await probe_error(url, ca)
    assert missing.kind is ErrorKind.AUTH
    wrong = await probe_error(url, {**ca, "bearer_token": TOKEN[::-1]})
    assert wrong.kind is ErrorKind.AUTH
    outcome = await probe(url, {**ca, "bearer_token": TOKEN})
    assert outcome.details["server_name"] == "connectord-auth-server"
    # Only read-only tools: no write (the rule in docs/mcp-probe.md).
    assert outcome.capabilities == ["read", "query"]
    as_header = await probe(url, {**ca, "headers": {"Authorization": f"Bearer {TOKEN}"}})
    assert as_header.details["tool_count"] == 2
    for text in (missing.message, wrong.message, outcome.details, as_header.details, caplog.text):
        assert TOKEN not in str(text)
        assert TOKEN[::-1] not in str(text)


async def test_tls_verifies_the_name_while_dialling_the_checked_address(
    auth_port: int, tls_ca: trustme.CA
) -> None:
    """``localhost`` is dialled at 127.0.0.1 and verified as ``localhost``.

    The bare IP is not in the certificate, so the same server by address fails TLS.
    """
    config = {"ca_pem": tls_ca.cert_pem.bytes().decode(), "bearer_token": TOKEN}
    assert (await probe(f"https://localhost:{auth_port}/mcp", config)).details["address"] == "127.0.0.1"
    by_ip = await probe_error(f"https://127.0.0.1:{auth_port}/mcp", config)
    assert by_ip.kind is ErrorKind.TLS
    untrusted = await probe_error(f"https://localhost:{auth_port}/mcp", {"bearer_token": TOKEN})
    assert untrusted.kind is ErrorKind.TLS


async def test_a_non_mcp_http_server_is_protocol(plain_http_url: str) -> None:
    error = await probe_error(plain_http_url)
    assert error.kind is ErrorKind.PROTOCOL
    sse = await probe_error(plain_http_url, {"transport": "sse"})
    assert sse.kind is ErrorKind.PROTOCOL


async def test_wrong_path_on_an_mcp_server_is_protocol(mcp_url: str) -> None:
    error = await probe_error(mcp_url.replace("/mcp", "/nope"))
    assert error.kind is ErrorKind.PROTOCOL
    assert "404" in error.message


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_closed_port_is_refused_quickly(transport: str) -> None:
    start = time.monotonic()
    error = await probe_error(f"http://127.0.0.1:{free_port()}/mcp", {"transport": transport})
    assert error.kind is ErrorKind.REFUSED
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_black_hole_times_out_within_the_bound(transport: str) -> None:
    with black_hole() as port:
        start = time.monotonic()
        error = await probe_error(f"http://127.0.0.1:{port}/mcp", {"transport": transport}, timeout=1.0)
    assert error.kind is ErrorKind.TIMEOUT
    assert 0.9 <= time.monotonic() - start < 3


async def test_an_sse_endpoint_on_another_origin_is_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK refuses it, then would wait for the whole timeout (issue 9, also seen)."""
    from aiohttp import web

    done = asyncio.Event()  # holds the stream open until the test ends, then lets cleanup finish

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: endpoint\ndata: http://127.0.0.2:9/messages?session_id=s3ss\n\n")
        await done.wait()
        return resp

    app = web.Application()
    app.router.add_get("/sse", sse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        start = time.monotonic()
        error = await probe_error(f"http://127.0.0.1:{port}/sse", {"transport": "sse"}, timeout=5.0)
        elapsed = time.monotonic() - start
    finally:
        done.set()
        await runner.cleanup()
    assert error.kind is ErrorKind.PROTOCOL
    assert "another origin" in error.message
    assert elapsed < 2.5  # the 5 s timeout is not waited for
    assert "s3ss" not in caplog.text


async def test_loopback_is_refused_by_the_default_policy(mcp_url: str) -> None:
    error = await probe_error(mcp_url, allow=[])
    assert error.kind is ErrorKind.EGRESS_DENIED


# --- the schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"transport": "stdio"},
        {"command": "npx"},
        {"args": ["-y", "server"]},
        {"transport": "stdio", "command": "sh"},
    ],
)
def test_stdio_is_refused_with_a_reason(config: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        McpConfig.model_validate(config)
    assert "remote code execution" in str(info.value)
    assert "remote code execution" in STDIO_REFUSED


def test_credential_headers_move_to_secret_headers() -> None:
    config = McpConfig.model_validate(
        {
            "headers": {
                "Authorization": "Bearer a",
                "X-Api-Key": "b",
                "X-Auth-Token": "c",
                "Accept-Language": "fr",
            }
        }
    )
    assert config.headers == {"Accept-Language": "fr"}
    assert set(config.secret_headers) == {"Authorization", "X-Api-Key", "X-Auth-Token"}
    assert config.request_headers()["X-Api-Key"] == "b"
    dumped = config.model_dump()
    assert "b" not in str(dumped["secret_headers"])
    schema = McpConfig.model_json_schema()
    assert schema["properties"]["secret_headers"]["additionalProperties"]["writeOnly"] is True
    assert schema["properties"]["bearer_token"]["anyOf"][0]["writeOnly"] is True
    assert all("description" in p for p in schema["properties"].values())


@pytest.mark.parametrize(
    "config",
    [
        {"headers": {"Host": "internal.example"}},
        {"headers": {"Bad Name": "x"}},
        {"headers": {"X-Trace": "a\r\nInjected: 1"}},
        {"bearer_token": "a", "headers": {"Authorization": "Bearer b"}},
        {"ca_pem": "/etc/ssl/certs/ca.pem"},
        {"transport": "websocket"},
        {"url_file": "/etc/passwd"},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        McpConfig.model_validate(config)


@pytest.mark.parametrize(
    "endpoint", ["", "ftp://127.0.0.1/mcp", "127.0.0.1:8000", "http://:80/x", "http://h:x/"]
)
async def test_unusable_endpoints_are_invalid_config(endpoint: str) -> None:
    assert (await probe_error(endpoint)).kind is ErrorKind.INVALID_CONFIG


# --- error mapping ------------------------------------------------------------------------


def _instances(cls: type[BaseException]) -> BaseException:
    request = httpx2.Request("POST", "http://127.0.0.1/mcp")
    if issubclass(cls, httpx2.HTTPStatusError):
        return cls("500", request=request, response=httpx2.Response(500, request=request))
    for args in ((), ("boom",)):
        try:
            return cls(*args)
        except TypeError:
            continue
    raise AssertionError(f"cannot build {cls}")


def test_every_httpx2_anyio_and_mcp_exception_maps_to_a_kind() -> None:
    """Every exception httpx2 and the SDK define, and anyio's stream and resource errors.

    anyio's worker, future, task and event-loop errors are left out: the client
    transports never raise them.
    """
    import mcp.client.streamable_http
    import mcp.shared.exceptions

    anyio_streams = {
        anyio.BrokenResourceError, anyio.BusyResourceError, anyio.ClosedResourceError, anyio.ConnectionFailed,
        anyio.DelimiterNotFound, anyio.EndOfStream, anyio.IncompleteRead, anyio.WouldBlock,
        anyio.TypedAttributeLookupError,
    }  # fmt: skip
    classes = [
        c
        for module in (httpx2, mcp.client.streamable_http)
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Exception)
        and not issubclass(c, Warning)
        and c.__module__.startswith(module.__name__)
    ] + sorted(anyio_streams, key=str)
    assert httpx2.ConnectError in classes
    allowed_internal = {anyio.BusyResourceError, anyio.WouldBlock, anyio.TypedAttributeLookupError}
    for cls in classes:
        error = map_mcp_error(_instances(cls))
        assert isinstance(error.kind, ErrorKind), cls
        assert error.kind is not ErrorKind.INTERNAL or cls in allowed_internal, cls
    for _, cls in inspect.getmembers(mcp.shared.exceptions, inspect.isclass):
        if issubclass(cls, mcp.shared.exceptions.MCPError):
            built = (
                cls("tools/call") if cls is mcp.shared.exceptions.NoBackChannelError else MCPError(-1, "x")
            )
            assert map_mcp_error(built).kind is ErrorKind.PROTOCOL, cls
    expected = {
        httpx2.ConnectTimeout: ErrorKind.TIMEOUT,
        httpx2.ReadTimeout: ErrorKind.TIMEOUT,
        httpx2.ConnectError: ErrorKind.UNAVAILABLE,
        httpx2.RemoteProtocolError: ErrorKind.PROTOCOL,
        httpx2.UnsupportedProtocol: ErrorKind.INVALID_CONFIG,
        anyio.ClosedResourceError: ErrorKind.UNAVAILABLE,
    }
    for cls, kind in expected.items():
        assert map_mcp_error(_instances(cls)).kind is kind, cls


def test_groups_are_unwrapped_and_causes_followed() -> None:
    refused = httpx2.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [refused])])
    assert map_mcp_error(nested).kind is ErrorKind.REFUSED
    probe_error = ProbeError(ErrorKind.EGRESS_DENIED, "policy")
    assert map_mcp_error(ExceptionGroup("g", [RuntimeError("x"), probe_error])) is probe_error


def test_mcp_errors_and_http_statuses() -> None:
    assert map_mcp_error(MCPError(REQUEST_TIMEOUT, "late")).kind is ErrorKind.TIMEOUT
    assert map_mcp_error(MCPError(CONNECTION_CLOSED, "gone")).kind is ErrorKind.UNAVAILABLE
    assert map_mcp_error(MCPError(METHOD_NOT_FOUND, "nope")).kind is ErrorKind.PROTOCOL
    assert map_mcp_error(MCPError(-32099, "custom")).kind is ErrorKind.PROTOCOL
    for status, kind in {401: ErrorKind.AUTH, 403: ErrorKind.AUTH, 404: ErrorKind.PROTOCOL,
                         405: ErrorKind.PROTOCOL, 503: ErrorKind.UNAVAILABLE}.items():  # fmt: skip
        traffic = Traffic()
        traffic.record(status, "text/html")
        assert map_mcp_error(MCPError(INTERNAL_ERROR, "error response"), traffic).kind is kind, status


# --- through the facade -------------------------------------------------------------------


@pytest.fixture
async def facade(tmp_path: Path) -> AsyncIterator[ConnectorsFacade]:
    """A private facade on SQLite with loopback opened."""
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path, egress_allow=LOOPBACK)) as f:
        yield f


async def test_facade_keeps_header_secrets_write_only(
    facade: ConnectorsFacade, auth_port: int, tls_ca: trustme.CA, plain_http_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    tenant = (await Admin(facade).create_tenant(f"t-{secrets.token_hex(4)}"))[0].id
    config = {"headers": {"Authorization": f"Bearer {TOKEN}"}, "ca_pem": tls_ca.cert_pem.bytes().decode()}
    info = await facade.register_connector(
        tenant, "tools", "mcp", f"https://localhost:{auth_port}/mcp", config
    )
    assert info.secret_fields == ["secret_headers.Authorization"]
    assert TOKEN not in str(info.to_dict())
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["tool_count"] == 2
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.capabilities == ["read", "query"]
    other = await facade.register_connector(tenant, "web", "mcp", plain_http_url)
    failed = await facade.test_connector(other.id, tenant)
    assert failed.error_kind == "protocol"
    assert TOKEN not in str(result.to_dict()) + str(failed.to_dict()) + caplog.text
