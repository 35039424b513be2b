"""The ``custom`` type: anything else, tested by TCP (and optional TLS) reachability."""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from connectord.model import Capability, ErrorKind
from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome

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
    ca_pem: str | None = Field(default=None, description="Extra CA certificates (PEM) to trust.")


def parse_host_port(endpoint: str | None) -> tuple[str, int, str]:
    """``(host, port, scheme)`` from ``host:port`` or a URL; :class:`ProbeError` if unusable."""
    if not endpoint:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is required (host:port or a URL)")
    text = endpoint if "://" in endpoint else f"tcp://{endpoint}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's port is not a number") from exc
    scheme = parts.scheme.lower()
    port = port or DEFAULT_PORTS.get(scheme)
    if not parts.hostname or port is None:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint needs a host and a port")
    return parts.hostname, port, scheme


def tls_context(verify: bool, ca_pem: str | None) -> ssl.SSLContext:
    """A client TLS context honouring the connector's verification settings."""
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_details(sslobj: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
    """TLS version, cipher and days until the peer certificate expires."""
    if sslobj is None:
        return {}
    details: dict[str, Any] = {"tls_version": sslobj.version()}
    cipher = sslobj.cipher()
    if cipher:
        details["tls_cipher"] = cipher[0]
    cert = sslobj.getpeercert()
    if cert and "notAfter" in cert:
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), UTC)
        details["certificate_expires_at"] = expires.isoformat()
        details["certificate_days_left"] = (expires - datetime.now(UTC)).days
    return details


class CustomType(ConnectorType):
    """User-declared capabilities; the test is a TCP connect plus an optional TLS handshake."""

    name: ClassVar[str] = "custom"
    description: ClassVar[str] = "Anything else: a TCP (and optional TLS) reachability check."
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
        start = time.perf_counter()
        destinations = await ctx.egress.resolve(host, port)
        phases["resolve_ms"] = _ms(start)
        dest = destinations[0]
        mark = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(dest.address, port)
        except ConnectionRefusedError as exc:
            raise ProbeError(ErrorKind.REFUSED, f"connection refused by {host}:{port}") from exc
        except OSError as exc:
            raise ProbeError(
                ErrorKind.UNAVAILABLE, f"cannot connect to {host}:{port}: {exc.strerror}"
            ) from exc
        phases["connect_ms"] = _ms(mark)
        details: dict[str, Any] = {"address": dest.address, "port": port}
        try:
            if use_tls:
                mark = time.perf_counter()
                try:
                    await writer.start_tls(
                        tls_context(config.tls_verify, config.ca_pem), server_hostname=host
                    )
                except ssl.SSLError as exc:
                    raise ProbeError(ErrorKind.TLS, f"TLS handshake failed: {exc.reason or exc}") from exc
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    raise ProbeError(
                        ErrorKind.TLS, "TLS handshake failed: the server closed the connection"
                    ) from exc
                phases["tls_ms"] = _ms(mark)
                details.update(certificate_details(writer.get_extra_info("ssl_object")))
        finally:
            writer.close()
        details["phases"] = phases
        return ProbeOutcome(details=details)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
