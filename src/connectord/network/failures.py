"""Connection failures as error kinds and words: exception chains, aiohttp's errors.

A driver's exception wraps others (``__cause__``, aiohttp's ``os_error``,
botocore's ``error``); :func:`chain` walks them so every probe maps a refusal,
a timeout or a TLS failure the same way, and :func:`error_text` says it in
words a tenant can act on.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

from connectord.model import ErrorKind


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it wraps (``__cause__``, an aiohttp ``os_error``, a botocore
    ``error``). Safe on cycles: drivers write ``raise e from e``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        yield exc
        inner = getattr(exc, "os_error", None) or (getattr(exc, "kwargs", None) or {}).get("error")
        exc = inner if isinstance(inner, BaseException) and id(inner) not in seen else exc.__cause__


def first_in_chain(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The first exception in ``exc``'s :func:`chain` that is one of ``kinds``, or ``None``."""
    return next((e for e in chain(exc) if isinstance(e, kinds)), None)


def refused(exc: BaseException | None) -> bool:
    """True when a connection refusal is somewhere in the exception's chain."""
    return any(isinstance(e, ConnectionRefusedError) for e in chain(exc))


# --- aiohttp errors ------------------------------------------------------------------------


def aiohttp_error_kind(exc: BaseException | type[BaseException]) -> ErrorKind | None:
    """The error kind of an aiohttp, asyncio, ssl or OS exception (an instance or a class).

    ``None`` when it is not a connection failure we know. An instance is
    refined by what it wraps: a refusal anywhere in its chain, a connect that
    timed out in the OS.
    """
    import aiohttp
    from aiohttp import http_exceptions

    if not isinstance(exc, type):
        if refused(exc):
            return ErrorKind.REFUSED
        cause = getattr(exc, "os_error", None) or exc.__cause__
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(cause, TimeoutError):
            return ErrorKind.TIMEOUT
    cls = exc if isinstance(exc, type) else type(exc)
    e, k = aiohttp, ErrorKind
    # Most specific first: the first entry the class is a subclass of wins.
    table: tuple[tuple[tuple[type[BaseException], ...], ErrorKind], ...] = (
        ((e.ServerFingerprintMismatch, e.ClientSSLError, ssl.SSLError), k.TLS),
        ((e.ClientConnectorDNSError,), k.DNS),
        ((TimeoutError,), k.TIMEOUT),  # asyncio's and aiohttp's timeouts subclass it
        ((e.ClientProxyConnectionError, e.ClientHttpProxyError), k.UNAVAILABLE),  # no proxy is used
        ((ConnectionRefusedError,), k.REFUSED),
        ((e.ClientConnectorError,), k.UNAVAILABLE),
        ((e.ServerDisconnectedError, e.ClientConnectionResetError, e.ClientResponseError), k.PROTOCOL),
        ((e.ClientPayloadError, e.RedirectClientError, http_exceptions.HttpProcessingError), k.PROTOCOL),
        ((e.InvalidURL, e.NonHttpUrlClientError, UnicodeError), k.INVALID_CONFIG),
        ((e.ClientConnectionError,), k.UNAVAILABLE),
        ((e.ClientError, e.WSMessageTypeError, ConnectionError), k.PROTOCOL),
        ((OSError,), k.UNAVAILABLE),
    )
    return next((kind for bases, kind in table if issubclass(cls, bases)), None)


_TEXTS = {
    ErrorKind.REFUSED: "connection refused by {where}",
    ErrorKind.TIMEOUT: "{where} did not answer in time",
    ErrorKind.DNS: "cannot resolve {where}",
    ErrorKind.INVALID_CONFIG: "the URL for {where} is not valid",
}


def error_text(exc: BaseException, kind: ErrorKind, where: str, *, quote_server: bool = False) -> str:
    """What failed, in words a tenant can act on: no class names, traces or secrets.

    ``quote_server`` adds aiohttp's description of an answer that is not HTTP,
    which quotes the server: only for callers that scrub their secrets from it.
    """
    if kind in _TEXTS:
        return _TEXTS[kind].format(where=where)
    if kind is ErrorKind.TLS:
        inner = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
        reason = (
            getattr(inner, "verify_message", None) or getattr(inner, "reason", None) or "handshake failed"
        )
        return f"TLS with {where} failed: {reason}"
    if kind is ErrorKind.UNAVAILABLE:
        inner = getattr(exc, "os_error", None) or exc
        return f"cannot connect to {where}: {getattr(inner, 'strerror', None) or 'connection failed'}"
    if kind is not ErrorKind.PROTOCOL:
        return f"the request to {where} failed ({type(exc).__name__})"
    detail = getattr(exc, "message", None)
    if not isinstance(detail, str) or not detail:
        return f"{where} did not answer valid HTTP (the connection was closed or the answer cut short)"
    if quote_server:
        return f"{where} did not answer valid HTTP: {detail[:120]}"
    return f"{where} did not answer valid HTTP"
