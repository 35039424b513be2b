"""Network plumbing the probes share: TLS, timing, endpoints, exception chains, aiohttp errors.

Nothing here imports a driver when the module loads (aiohttp is imported
where its classes are needed), so a type's config schema still loads without
it. The aiohttp client pieces (the egress-checked resolver, ``CheckedHttp``)
are in ``_checked_http.py``, the AWS ones in ``_aws.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, SecretStr

from connectord.model import ErrorKind
from connectord.plugin import ProbeError

if TYPE_CHECKING:
    import aiohttp

HTTP_PORTS = {"http": 80, "https": 443}

# --- secrets, timing ---------------------------------------------------------------------


def reveal(secret: SecretStr | None) -> str | None:
    """The value of an optional secret field."""
    return secret.get_secret_value() if secret is not None else None


def ms_between(start: float, end: float) -> float:
    """Milliseconds between two ``time.perf_counter()`` marks."""
    return round((end - start) * 1000, 3)


def ms_since(start: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` mark."""
    return ms_between(start, time.perf_counter())


@contextlib.contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the time the block takes to ``phases[name]`` (ms), also when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + ms_since(start), 3)


# --- TLS -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def tls_context(verify: bool, ca_pem: str | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client TLS context honouring the connector's verification settings.

    Cached, because building one loads the CA store (tens of milliseconds, more
    than a test): callers share the object and must not change it.
    """
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class PinnedNameContext(ssl.SSLContext):
    """A client TLS context that verifies ``pinned_name`` whatever name the driver passes.

    Drivers take one host argument and use it both to connect and as the TLS
    name; we hand them the checked address, so the context puts the connector's
    host name back into the handshake (SNI and the certificate check). The one
    such context of every probe (SQL, streams).
    """

    pinned_name: str
    #: Blocking sockets this context wrapped: paho leaves one open when its handshake fails.
    wrapped: list[ssl.SSLSocket]

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """Wrap for asyncio's TLS transport, with the pinned name."""
        name = server_hostname if server_side else self.pinned_name
        return super().wrap_bio(incoming, outgoing, server_side, name, session)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap a blocking socket (paho-mqtt), with the pinned name."""
        name = server_hostname if server_side else self.pinned_name
        wrapped = super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, name, session
        )
        self.wrapped.append(wrapped)
        return wrapped


def pinned_tls_context(host: str, verify: bool, ca_pem: str | None) -> PinnedNameContext:
    """A client context for ``host``: the system CAs (or ``ca_pem``), verification as configured."""
    ctx = PinnedNameContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.pinned_name = host
    ctx.wrapped = []
    if not verify:
        # Nothing is verified: the CA store (tens of milliseconds to load) is not read.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem)
        else:
            ctx.load_default_certs()
    except (ssl.SSLError, ValueError) as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "ca_pem holds no valid PEM certificate") from exc
    return ctx


def tls_error(exc: BaseException) -> ProbeError | None:
    """A TLS failure as a ``tls`` :class:`ProbeError` (the one mapping of every probe); else ``None``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeError(ErrorKind.TLS, f"TLS certificate verification failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return ProbeError(ErrorKind.TLS, f"TLS handshake failed: {getattr(exc, 'reason', None) or 'error'}")
    return None


def check_pem(value: str | None) -> str | None:
    """A ``ca_pem`` field validator body: CA certificates as PEM text that parses.

    Never a file path (the server does not read its own files for a tenant), and
    never a private key (the field is not secret, so it is stored in clear).
    """
    if value is None:
        return None
    if "PRIVATE KEY" in value:
        raise ValueError("holds a private key; give only CA certificates")
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----), not a file path")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError("holds a certificate that does not parse") from exc
    return value


#: The type of a ``ca_pem`` config field, checked by :func:`check_pem`.
CaPem = Annotated[str | None, AfterValidator(check_pem)]


def certificate_details(sslobj: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
    """TLS version, cipher and the peer certificate's expiry (read even when not verified)."""
    if sslobj is None:
        return {}
    details: dict[str, Any] = {"tls_version": sslobj.version()}
    cipher = sslobj.cipher()
    if cipher:
        details["tls_cipher"] = cipher[0]
    der = sslobj.getpeercert(binary_form=True)
    if der:
        from cryptography import x509

        expires = x509.load_der_x509_certificate(der).not_valid_after_utc
        details["certificate_expires_at"] = expires.isoformat()
        details["certificate_days_left"] = (expires - datetime.now(UTC)).days
    return details


# --- endpoints and connections -------------------------------------------------------------


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


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; the rest is dropped with the connection."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# --- exception chains ------------------------------------------------------------------------


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
