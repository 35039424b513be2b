"""SSRF through redirects to IP literals (issue 9, item 1).

With only 127.0.0.1/32 allowed, an AWS endpoint that answers ``307 Location:
http://127.0.0.2:PORT/`` (or ``[::1]``) must not make the server connect there:
aiohttp never asks a resolver about an IP literal, so the check has to happen
where the socket is made. Every listener here is on loopback; the "forbidden"
targets are loopback addresses outside the narrow allow list.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from connectord.model import ErrorKind
from connectord.network import EgressPolicy, Network
from connectord.plugin import ConnectorType, ProbeContext, ProbeError
from connectord.types.file import FileType
from connectord.types.serverless import ServerlessType

NARROW = ["127.0.0.1/32"]


@dataclass
class Target:
    """A listener that only counts the connections it accepts."""

    host: str
    connections: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> None:
        async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(accept, self.host, 0)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/x"


async def redirector(location: str) -> asyncio.Server:
    """An HTTP server on 127.0.0.1 that answers every request with a 307 to ``location``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


TARGET_HOSTS = [
    "127.0.0.2",
    pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1")),
]


@pytest.fixture(params=TARGET_HOSTS)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    found = Target(str(request.param))
    await found.start()
    yield found
    assert found.server is not None
    found.server.close()


def _aws_keys() -> dict[str, str]:
    return {"access_key_id": "testing", "secret_access_key": "testing", "region": "eu-west-1"}


CASES: list[tuple[ConnectorType, str, dict[str, str]]] = [
    (FileType(), "s3://bucket/prefix", {}),
    (ServerlessType(), "", {"provider": "aws_lambda", "function_name": "fn"}),
]


@pytest.mark.parametrize(("ctype", "endpoint", "extra"), CASES, ids=["s3", "lambda"])
async def test_aws_redirect_to_a_denied_literal_never_connects(
    target: Target, ctype: ConnectorType, endpoint: str, extra: dict[str, str]
) -> None:
    server = await redirector(target.url)
    port = server.sockets[0].getsockname()[1]
    try:
        config = {**_aws_keys(), **extra, "endpoint_url": f"http://127.0.0.1:{port}"}
        ctx = ProbeContext(
            endpoint=endpoint or None,
            config=ctype.config_model.model_validate(config),
            timeout=5.0,
            network=Network(EgressPolicy(NARROW)),
        )
        with pytest.raises(ProbeError) as caught:
            await ctype.probe(ctx)
    finally:
        server.close()
    assert target.connections == 0
    assert caught.value.kind == ErrorKind.EGRESS_DENIED
    assert target.host.strip("[]") in caught.value.message
