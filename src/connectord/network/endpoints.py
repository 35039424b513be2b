"""Endpoints and TCP connections: host names, ``host:port`` and http(s) URLs, checked connects."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import SplitResult, urlsplit

from connectord.errors import ProbeError
from connectord.model import ErrorKind

HTTP_PORTS = {"http": 80, "https": 443}


def host_key(host: str) -> str:
    """A host name as resolvers compare it: lower case, no trailing dot."""
    return host.lower().rstrip(".")


def split_endpoint(
    endpoint: str | None, bare_scheme: str, example: str
) -> tuple[SplitResult, str, int | None]:
    """A URL, or a bare ``host[:port]`` read as ``bare_scheme://host[:port]``: its parts, host and port.

    :class:`ProbeError` (``invalid_config``) when it is missing (``example``
    says what to give), does not parse, has a port that is not a number, or no host.
    """
    if not endpoint:
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"the endpoint is required ({example})")
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"{bare_scheme}://{endpoint}")
        port = parts.port
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's port is not a number") from exc
    if not parts.hostname:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint needs a host")
    return parts, parts.hostname, port


def parse_http_url(url: str | None, *, default_port: int = 80) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of an http(s) URL; a bare ``host[:port]`` means http on
    ``default_port`` (a provider's usual port)."""
    parts, host, port = split_endpoint(url, "http", "an http:// or https:// URL")
    scheme = parts.scheme.lower()
    if scheme not in HTTP_PORTS:
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"unsupported scheme {scheme!r}: use http:// or https://")
    if parts.username or parts.password:
        raise ProbeError(
            ErrorKind.INVALID_CONFIG, "put credentials in the config's secret fields, not the URL"
        )
    if port is None:
        port = default_port if "://" not in str(url) else HTTP_PORTS[scheme]
    return scheme, host, port, parts.path.rstrip("/")


async def open_tcp(
    address: str, port: int, target: str, deadline: float | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to a checked address; refused, silent and other failures as :class:`ProbeError`.

    ``target`` (``host:port``) names the server in the messages; ``deadline``
    (``time.monotonic()``) bounds the connect, or else the caller's own bound applies.
    """
    left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        async with asyncio.timeout(left):
            return await asyncio.open_connection(address, port)
    except ConnectionRefusedError as exc:
        raise ProbeError(ErrorKind.REFUSED, f"connection refused by {target}") from exc
    except TimeoutError as exc:
        raise ProbeError(ErrorKind.TIMEOUT, f"{target} did not accept a connection in time") from exc
    except OSError as exc:
        raise ProbeError(ErrorKind.UNAVAILABLE, f"cannot connect to {target}: {exc.strerror}") from exc
