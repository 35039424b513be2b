"""The ``custom`` type: anything else, tested by TCP (and optional TLS) reachability."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, ClassVar

from pydantic import Field

from connectord.model import Capability, ErrorKind
from connectord.network.endpoints import open_tcp, split_endpoint
from connectord.network.tls import CaPem, certificate_details
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.timing import timed
from connectord.types.endpoint import EndpointRule

__all__ = [
    "DEFAULT_PORTS",
    "TLS_SCHEMES",
    "CustomConfig",
    "CustomType",
    "parse_host_port",
]

DEFAULT_PORTS = {"http": 80, "https": 443, "tls": 443, "ws": 80, "wss": 443}
TLS_SCHEMES = {"https", "tls", "wss"}


class CustomConfig(ConnectorConfig):
    """Config of a ``custom`` connector."""

    capabilities: list[Capability] = Field(
        default_factory=lambda: [Capability.READ],
        description="What this connector can do; declared by the user.",
    )
    tls: bool | None = Field(
        default=None,
        description="Do a TLS handshake after connecting (default: from the scheme, e.g. https, tls).",
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and name.")
    ca_pem: CaPem = Field(default=None, description="Extra CA certificates (PEM) to trust.")


def parse_host_port(endpoint: str | None) -> tuple[str, int, str]:
    """``(host, port, scheme)`` from ``host:port`` or a URL; :class:`ProbeError` if unusable."""
    parts, host, port = split_endpoint(endpoint, "tcp", "host:port or a URL")
    scheme = parts.scheme.lower()
    port = port or DEFAULT_PORTS.get(scheme)
    if port is None:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint needs a port")
    return host, port, scheme


class CustomType(ConnectorType):
    """User-declared capabilities; the test is a TCP connect plus an optional TLS handshake."""

    name: ClassVar[str] = "custom"
    description: ClassVar[str] = "Anything else: a TCP (and optional TLS) reachability check."
    endpoint: ClassVar[EndpointRule] = EndpointRule(bare=True, credentials=True, user_alone=True)
    config_model: ClassVar[type[ConnectorConfig]] = CustomConfig

    def capabilities(self, config: ConnectorConfig) -> list[str]:
        assert isinstance(config, CustomConfig)
        return [str(c) for c in dict.fromkeys(config.capabilities)]

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        config = ctx.config
        assert isinstance(config, CustomConfig)
        host, port, scheme = parse_host_port(ctx.endpoint)
        use_tls = config.tls if config.tls is not None else scheme in TLS_SCHEMES
        phases: dict[str, float] = {}
        with timed(phases, "resolve_ms"):
            destinations = await ctx.network.resolve(host, port)
        dest = destinations[0]
        with timed(phases, "connect_ms"):
            _, writer = await open_tcp(dest.address, port, f"{host}:{port}")
        details: dict[str, Any] = {"address": dest.address, "port": port}
        try:
            if use_tls:
                with timed(phases, "tls_ms"):
                    await _start_tls(writer, ctx.network.tls(config.tls_verify, config.ca_pem), host)
                details.update(certificate_details(writer.get_extra_info("ssl_object")))
        finally:
            writer.close()
        details["phases"] = phases
        return ProbeOutcome(details=details)


async def _start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext, host: str) -> None:
    try:
        await writer.start_tls(context, server_hostname=host)
    except ssl.SSLError as exc:
        raise ProbeError(ErrorKind.TLS, f"TLS handshake failed: {exc.reason or exc}") from exc
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ProbeError(ErrorKind.TLS, "TLS handshake failed: the server closed the connection") from exc
