"""The ``custom`` type's probe: TCP (and optional TLS) reachability, against loopback servers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme

from connectord import ConnectorsFacade, Settings, TestResult
from connectord.admin import Admin
from connectord.network import EgressPolicy, Network
from connectord.plugin import ProbeContext, ProbeError
from connectord.types.custom import CustomConfig, CustomType

LOOPBACK = ["127.0.0.0/8", "::1/128"]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class Servers:
    """Loopback servers started by a test, all stopped at its end."""

    def __init__(self) -> None:
        self.release = asyncio.Event()  # handlers that hold a connection wait for this
        self._servers: list[asyncio.Server] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(
        self, handler: Handler, *, tls: ssl.SSLContext | None = None, host: str | list[str] = "127.0.0.1"
    ) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(tracked, host, 0, ssl=tls)
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accept and say nothing until the test ends."""
        await self.release.wait()

    async def close(self) -> None:
        self.release.set()
        await asyncio.sleep(0)
        for writer in self._writers:
            writer.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    running = Servers()
    yield running
    await running.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(ctx)
    return ctx


@pytest.fixture
def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


@pytest.fixture
async def loop_facade(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    """A SQLite facade whose egress policy opens loopback, and a tenant in it."""
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path, egress_allow=LOOPBACK)) as facade:
        tenant, _ = await Admin(facade).create_tenant("probes")
        yield facade, tenant.id


async def _test(
    loop_facade: tuple[ConnectorsFacade, str], endpoint: str, config: dict[str, object] | None = None
) -> TestResult:
    facade, tenant = loop_facade
    info = await facade.register_connector(tenant, f"c{time.monotonic_ns()}", "custom", endpoint, config)
    return await facade.test_connector(info.id, tenant)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _direct(endpoint: str, allow: list[str] = LOOPBACK, **config: object) -> ProbeContext:
    return ProbeContext(
        endpoint=endpoint,
        config=CustomConfig.model_validate(config),
        timeout=2,
        network=Network(EgressPolicy(allow)),
    )


# --- success ------------------------------------------------------------------------


async def test_tcp_success(servers: Servers, loop_facade: tuple[ConnectorsFacade, str]) -> None:
    port = await servers.start(servers.hold)
    result = await _test(loop_facade, f"127.0.0.1:{port}", {"capabilities": ["read", "write"]})
    assert result.success, result.error
    assert result.error is None
    assert result.details["address"] == "127.0.0.1"
    assert result.details["port"] == port
    assert set(result.details["phases"]) == {"resolve_ms", "connect_ms"}
    assert result.latency_ms is not None
    assert result.latency_ms >= 0
    facade, tenant = loop_facade
    stored = await facade.get_connector(result.connector_id, tenant)
    assert stored is not None
    assert stored.status == "connected"
    assert stored.capabilities == ["read", "write"]


async def test_tcp_success_directly(servers: Servers) -> None:
    port = await servers.start(servers.hold)
    outcome = await CustomType().probe(_direct(f"tcp://127.0.0.1:{port}"))
    assert outcome.details["port"] == port
    assert "tls_ms" not in outcome.details["phases"]


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_tcp_success_over_ipv6(servers: Servers, loop_facade: tuple[ConnectorsFacade, str]) -> None:
    port = await servers.start(servers.hold, host="::1")
    result = await _test(loop_facade, f"tcp://[::1]:{port}")
    assert result.success, result.error
    assert result.details["address"] == "::1"


async def test_tls_success_with_the_ca(
    servers: Servers, server_tls: ssl.SSLContext, ca_pem: str, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    port = await servers.start(servers.hold, tls=server_tls)
    result = await _test(loop_facade, f"tls://127.0.0.1:{port}", {"ca_pem": ca_pem})
    assert result.success, result.error
    assert result.details["tls_version"].startswith("TLS")
    assert result.details["tls_cipher"]
    assert result.details["certificate_days_left"] > 0
    assert set(result.details["phases"]) == {"resolve_ms", "connect_ms", "tls_ms"}

    explicit = await _test(loop_facade, f"127.0.0.1:{port}", {"ca_pem": ca_pem, "tls": True})
    assert explicit.success, explicit.error


async def test_tls_success_without_verification(
    servers: Servers, server_tls: ssl.SSLContext, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    port = await servers.start(servers.hold, tls=server_tls)
    result = await _test(loop_facade, f"https://127.0.0.1:{port}", {"tls_verify": False})
    assert result.success, result.error


# --- failures -----------------------------------------------------------------------


async def test_tls_fails_without_the_ca(
    servers: Servers, server_tls: ssl.SSLContext, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    port = await servers.start(servers.hold, tls=server_tls)
    result = await _test(loop_facade, f"tls://127.0.0.1:{port}")
    assert result.success is False
    assert result.error_kind == "tls"
    assert "TLS handshake failed" in (result.error or "")
    assert "Traceback" not in (result.error or "")


async def test_tls_fails_on_a_name_mismatch(
    servers: Servers, ca: trustme.CA, ca_pem: str, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("elsewhere.example").configure_cert(ctx)
    port = await servers.start(servers.hold, tls=ctx)
    result = await _test(loop_facade, f"tls://127.0.0.1:{port}", {"ca_pem": ca_pem})
    assert result.error_kind == "tls"


async def test_tls_against_a_plain_server_is_a_tls_failure(
    servers: Servers, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    async def http_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await writer.drain()

    port = await servers.start(http_answer)
    result = await _test(loop_facade, f"tls://127.0.0.1:{port}")
    assert result.error_kind == "tls"


async def test_a_server_that_hangs_up_during_tls_is_a_tls_failure(
    servers: Servers, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    port = await servers.start(hang_up)
    result = await _test(loop_facade, f"tls://127.0.0.1:{port}")
    assert result.error_kind == "tls"


async def test_closed_port_is_refused_quickly(loop_facade: tuple[ConnectorsFacade, str]) -> None:
    port = _closed_port()
    start = time.monotonic()
    result = await _test(loop_facade, f"127.0.0.1:{port}")
    assert time.monotonic() - start < 2
    assert result.success is False
    assert result.error_kind == "refused"
    assert result.error == f"connection refused by 127.0.0.1:{port}"
    with pytest.raises(ProbeError) as caught:
        await CustomType().probe(_direct(f"127.0.0.1:{port}"))
    assert caught.value.kind == "refused"


async def test_a_tls_handshake_that_never_answers_times_out(
    servers: Servers, loop_facade: tuple[ConnectorsFacade, str]
) -> None:
    """TCP connects as soon as the kernel accepts, so the hang is in the TLS handshake."""
    port = await servers.start(servers.hold)
    start = time.monotonic()
    result = await _test(loop_facade, f"tls://127.0.0.1:{port}", {"timeout": 0.5})
    elapsed = time.monotonic() - start
    assert result.success is False
    assert result.error_kind == "timeout"
    assert "0.5 s" in (result.error or "")
    assert elapsed < 0.5 + 2


@pytest.mark.parametrize(
    "endpoint",
    ["127.0.0.1:{port}", "localhost:{port}", "tcp://[::1]:{port}", "2130706433:{port}", "0x7f.1:{port}"],
)
async def test_loopback_is_denied_without_an_allow_list(
    tmp_path: Path, servers: Servers, endpoint: str
) -> None:
    """The default policy refuses loopback before connecting: the listener sees nothing."""
    accepted: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)

    port = await servers.start(count)
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path)) as facade:
        tenant, _ = await Admin(facade).create_tenant("denied")
        info = await facade.register_connector(tenant.id, "c", "custom", endpoint.format(port=port))
        result = await facade.test_connector(info.id, tenant.id)
    assert result.success is False
    assert result.error_kind == "egress_denied"
    assert "egress policy" in (result.error or "")
    assert "CONNECTORD_EGRESS_ALLOW" in (result.error or "")
    await asyncio.sleep(0.05)
    assert accepted == []


@pytest.mark.parametrize("endpoint", [None, "", "just-a-host.invalid", "tcp://127.0.0.1"])
async def test_an_unusable_endpoint_is_invalid_config(
    loop_facade: tuple[ConnectorsFacade, str], endpoint: str | None
) -> None:
    result = await _test(loop_facade, endpoint)  # type: ignore[arg-type]
    assert result.success is False
    assert result.error_kind == "invalid_config"
