"""The ``http`` type: REST/HTTP APIs, tested with one real ``GET`` (or ``HEAD``).

The probe resolves the host through the egress policy, connects to the
checked address over a fresh connection (aiohttp, with a resolver that only
answers the addresses the policy checked, so there is no second DNS lookup;
TLS still verifies the name), follows redirects itself so each hop is checked
again, and reports the status, HTTP version, server, TLS version and
certificate expiry, the redirect chain and the time of each phase.
``docs/http-probe.md`` explains the choices (client, defaults, error kinds).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from pydantic import SecretStr

from connectord.model import Capability, ErrorKind
from connectord.network.egress import parse_ip_literal
from connectord.network.endpoints import host_key
from connectord.network.failures import aiohttp_error_kind, error_text
from connectord.network.http import read_at_most
from connectord.network.tls import certificate_details
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.redaction import redact_url, scrub, scrub_text
from connectord.timing import ms_between
from connectord.types._http_config import (
    HTTP_TOKEN,
    MAX_REDIRECTS,
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    HttpConfig,
    NoAuth,
    OAuth2ClientCredentials,
    is_credential_header,
)
from connectord.types.endpoint import EndpointRule

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

__all__ = [
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "HttpConfig",
    "HttpType",
    "NoAuth",
    "OAuth2ClientCredentials",
    "error_kind",
    "is_credential_header",
]

MAX_BODY_BYTES = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "connectord-probe/0.1"
#: aiohttp speaks HTTP/1.1 only: say so in the handshake.
ALPN = ("http/1.1",)


# --- error mapping --------------------------------------------------------------------


def error_kind(exc: BaseException | type[BaseException]) -> ErrorKind:
    """The error kind of an aiohttp, asyncio, ssl or OS exception (an instance or a class).

    The one mapping of this probe (shared with the other HTTP
    probes); ``internal`` means "not a connection failure we know", which the
    facade reports as a probe bug.
    """
    return aiohttp_error_kind(exc) or ErrorKind.INTERNAL


# --- the probe ------------------------------------------------------------------------


@dataclass(slots=True)
class _Hop:
    """Timestamps of one request on its own connection."""

    url: URL
    resolve_start: float = 0.0
    resolve_end: float = 0.0
    connect_start: float = 0.0
    tcp_end: float = 0.0
    ready: float = 0.0
    first_byte: float = 0.0
    ssl_object: ssl.SSLObject | None = None
    peer: str | None = None

    def step(self) -> str:
        """Where this hop is now, for a timeout message."""
        if not self.resolve_end:
            return "resolving"
        if not self.tcp_end and not self.ready:
            return "connecting"
        if not self.ready:
            return "in the TLS handshake"
        return "waiting for the response" if not self.first_byte else "reading the body"

    def phases(self, into: dict[str, float]) -> None:
        """Add this hop's phases (ms) to a running total."""
        spans = {"resolve_ms": (self.resolve_start, self.resolve_end)}
        if self.tcp_end and self.url.scheme == "https":
            spans |= {"connect_ms": (self.connect_start, self.tcp_end), "tls_ms": (self.tcp_end, self.ready)}
        else:
            spans["connect_ms"] = (self.connect_start, self.ready)
        spans["first_byte_ms"] = (self.ready, self.first_byte)
        for name, (start, end) in spans.items():
            if start and end:
                into[name] = round(into.get(name, 0.0) + ms_between(start, end), 3)


class _TimedSocket(socket.socket):
    """A socket that notes when its TCP connect completed (for ``connect_ms``)."""

    hop: _Hop | None = None

    def connect(self, address: Any) -> None:
        super().connect(address)
        if self.hop is not None:  # a non-blocking connect that finished at once (loopback)
            self.hop.tcp_end = self.hop.tcp_end or time.perf_counter()

    def getsockopt(self, *args: Any) -> Any:
        # The event loop reads SO_ERROR once a connect finished in the background.
        if self.hop is not None and args[:2] == (socket.SOL_SOCKET, socket.SO_ERROR):
            self.hop.tcp_end = self.hop.tcp_end or time.perf_counter()
        return super().getsockopt(*args)


#: The test running in this task: the shared connector reads its pins and its current hop.
_CURRENT: ContextVar[_Run | None] = ContextVar("connectord_http_probe", default=None)


def _current_hop() -> _Hop | None:
    run = _CURRENT.get()
    return run.hops[-1] if run is not None and run.hops else None


@functools.cache
def _connector_class() -> type[aiohttp.TCPConnector]:
    import aiohttp

    from connectord.network.http import CheckedResolver

    class PinnedResolver(CheckedResolver):
        """Answers only the names the egress policy checked for this test, with its addresses."""

        async def addresses(self, host: str, port: int) -> list[str]:
            run = _CURRENT.get()
            addresses = run.pins.get(host_key(host)) if run is not None else None
            if addresses is None:
                raise OSError(f"{host} was not checked by the egress policy")
            return addresses

    class ProbeConnector(aiohttp.TCPConnector):
        """A fresh connection per request (never pooled), pinned addresses, timestamps per hop."""

        def __init__(self) -> None:
            super().__init__(
                resolver=PinnedResolver(),
                use_dns_cache=False,  # so the resolver runs in the test's own task and context
                force_close=True,
                limit=0,
                socket_factory=self._socket,
            )

        def _socket(self, addr_info: Any) -> socket.socket:
            family, kind, proto, _, _ = addr_info
            sock = _TimedSocket(family, kind, proto)
            sock.hop = hop = _current_hop()
            if hop is not None:
                hop.connect_start = hop.connect_start or time.perf_counter()
            return sock

        async def connect(self, *args: Any, **kwargs: Any) -> aiohttp.connector.Connection:
            conn = await super().connect(*args, **kwargs)
            hop = _current_hop()
            if hop is not None and conn.transport is not None:
                hop.ready = time.perf_counter()
                hop.ssl_object = conn.transport.get_extra_info("ssl_object")
                peer = conn.transport.get_extra_info("peername")
                hop.peer = str(peer[0]) if peer else None
            return conn

    return ProbeConnector


@dataclass(slots=True)
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


#: One session per event loop while tests run on it. Connections are never shared
#: (force_close); sharing the session saves creating one per test (measured +15-25 %
#: CPU per test); the last test out closes it.
_SESSIONS: dict[asyncio.AbstractEventLoop, _Shared] = {}


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    import aiohttp

    loop = asyncio.get_running_loop()
    shared = _SESSIONS.get(loop)
    if shared is None:
        session = aiohttp.ClientSession(
            connector=_connector_class()(),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        shared = _SESSIONS[loop] = _Shared(session)
    shared.users += 1
    try:
        yield shared.session
    finally:
        shared.users -= 1
        if shared.users == 0:
            if _SESSIONS.get(loop) is shared:
                del _SESSIONS[loop]
            await shared.session.close()


@dataclass(slots=True)
class _Run:
    """One test: its config, the secrets to keep out of every text, and what it saw."""

    ctx: ProbeContext
    config: HttpConfig
    origin: URL
    secrets: list[str]
    pins: dict[str, list[str]] = field(default_factory=dict)
    hops: list[_Hop] = field(default_factory=list)
    redirects: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    where: str = ""

    def scrub(self, text: str) -> str:
        """The text with every secret, in every encoding, replaced."""
        return scrub_text(text, self.secrets)

    def shown(self, url: URL) -> str:
        """A URL as reported: no user info, credential parameters masked by name, no secret."""
        auth = self.config.auth
        named = [auth.name] if isinstance(auth, ApiKeyAuth) and auth.location == "query" else []
        return self.scrub(redact_url(str(url), named))

    def clean(self, details: dict[str, Any]) -> dict[str, Any]:
        """``details`` scrubbed of every secret, including an access token fetched during the
        run, which the runner never sees: a server may echo it into any header we report."""
        return scrub(details, self.secrets)

    def details(self) -> dict[str, Any]:
        """What the run learned so far."""
        phases = dict(self.phases)
        for hop in self.hops:
            hop.phases(phases)
        out: dict[str, Any] = {"phases": phases}
        if self.redirects:
            out["redirects"] = self.redirects
        return out

    async def send(
        self, session: aiohttp.ClientSession, method: str, url: URL, **kwargs: Any
    ) -> tuple[aiohttp.ClientResponse, _Hop]:
        """Check the URL's host with the egress policy, pin it, and send one request."""
        host, port = url.raw_host or "", url.port or (443 if url.scheme == "https" else 80)
        self.where = f"{url.host}:{port}"
        hop = _Hop(url, resolve_start=time.perf_counter())
        self.hops.append(hop)
        destinations = await self.ctx.network.resolve(host, port)
        hop.resolve_end = time.perf_counter()
        literal = parse_ip_literal(host)
        if literal is not None:  # aiohttp refuses legacy spellings: send the checked form
            url = url.with_host(str(literal))
        else:
            self.pins[host_key(host)] = [d.address for d in destinations]
        ssl_arg: ssl.SSLContext | bool = True
        if url.scheme == "https":
            ssl_arg = self.ctx.network.tls(self.config.tls_verify, self.config.ca_pem, ALPN)
        response = await session.request(method, url, allow_redirects=False, ssl=ssl_arg, **kwargs)
        hop.first_byte = time.perf_counter()
        return response, hop


def _target(endpoint: str | None, config: HttpConfig) -> URL:
    from yarl import URL

    if not endpoint:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint URL is required (http:// or https://)")
    try:
        url = URL(endpoint)
        port = url.port
    except (ValueError, TypeError):
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.raw_host or port is None:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint must be an http:// or https:// URL")
    url = url.with_fragment(None)
    if config.health_path:
        path, _, query = config.health_path.partition("?")
        url = url.with_path(url.raw_path.rstrip("/") + path, encoded=True)
        if query:
            url = URL(f"{url}?{query}")
    return url


def _auth_headers(config: HttpConfig, username: str | None, url_password: str | None) -> dict[str, str]:
    auth = config.auth
    if isinstance(auth, BasicAuth):
        return {"Authorization": _basic(auth.username, auth.password.get_secret_value())}
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
    if isinstance(auth, ApiKeyAuth) and auth.location == "header":
        return {auth.name: auth.value.get_secret_value()}
    password = config.password.get_secret_value() if config.password else url_password
    if isinstance(auth, NoAuth) and (password or username):
        return {"Authorization": _basic(username or "", password or "")}
    return {}


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _secret_values(config: HttpConfig, url: URL) -> list[str]:
    values = [s.get_secret_value() for s in config.secret_headers.values()]
    for holder in (config, config.auth):
        values += [v.get_secret_value() for v in vars(holder).values() if isinstance(v, SecretStr)]
    if url.password:
        values.append(url.password)
    return values


def _same_origin(a: URL, b: URL) -> bool:
    """Credentials follow a redirect only to the same origin, or its upgrade to https."""
    if (a.raw_host or "").lower().rstrip(".") != (b.raw_host or "").lower().rstrip("."):
        return False
    upgrade = (a.scheme, b.scheme) == ("http", "https") and b.port == 443
    return upgrade or (a.scheme, a.port) == (b.scheme, b.port)


async def _fetch_token(run: _Run, session: aiohttp.ClientSession, auth: OAuth2ClientCredentials) -> str:
    """A fresh access token from the token endpoint (itself checked by the egress policy)."""
    from yarl import URL

    form = {"grant_type": "client_credentials"}
    form |= {k: v for k, v in (("scope", auth.scope), ("audience", auth.audience)) if v}
    headers = {"Accept": "application/json"}
    secret = auth.client_secret.get_secret_value()
    if auth.client_auth == "basic":  # RFC 6749 2.3.1: form-encode both before Basic
        headers["Authorization"] = _basic(quote(auth.client_id, safe=""), quote(secret, safe=""))
    else:
        form |= {"client_id": auth.client_id, "client_secret": secret}
    started = time.perf_counter()
    response, _ = await run.send(session, "POST", URL(auth.token_url), data=form, headers=headers)
    async with response:
        body = await read_at_most(response, MAX_BODY_BYTES)
    run.phases["auth_ms"] = ms_between(started, time.perf_counter())
    run.hops.pop()  # the token request is timed as auth_ms, not as the endpoint's phases
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = None
    if response.status != 200 or not isinstance(payload, dict):
        code = payload.get("error") if isinstance(payload, dict) else None
        reason = f" ({code})" if isinstance(code, str) and HTTP_TOKEN.match(code) else ""
        kind = ErrorKind.AUTH if response.status in (400, 401, 403) else ErrorKind.UNEXPECTED_STATUS
        raise ProbeError(
            kind,
            f"the token endpoint answered {response.status}{reason}: no access token",
            {"token_status": response.status},
        )
    token = payload.get("access_token")
    token_type = str(payload.get("token_type", "bearer")).lower()
    if not isinstance(token, str) or not token or token_type != "bearer":  # noqa: S105 - a token type name
        raise ProbeError(ErrorKind.PROTOCOL, "the token endpoint gave no bearer access_token")
    run.secrets.append(token)
    return token


def _status_failure(run: _Run, status: int, reason: str, details: dict[str, Any]) -> ProbeError:
    expected = run.config.expected_status
    wanted = ", ".join(map(str, expected)) if expected else "2xx or 3xx"
    if status in (401, 403):
        text = f"{run.where} answered {status} {reason}: the credentials were refused or are missing"
        return ProbeError(ErrorKind.AUTH, run.scrub(text), details)
    text = f"{run.where} answered {status} {reason}, expected {wanted}"
    return ProbeError(ErrorKind.UNEXPECTED_STATUS, run.scrub(text), details)


async def _exchange(run: _Run, session: aiohttp.ClientSession) -> dict[str, Any]:
    """Request the endpoint, following redirects; the details of the final answer."""
    from multidict import CIMultiDict

    config = run.config
    url = run.origin.with_user(None)
    method: str = config.method
    plain = {"User-Agent": USER_AGENT, "Accept": "*/*", **config.headers}
    credentials = {k: v.get_secret_value() for k, v in config.secret_headers.items()}
    credentials |= _auth_headers(config, run.origin.user, run.origin.password)
    if isinstance(config.auth, OAuth2ClientCredentials):
        credentials["Authorization"] = f"Bearer {await _fetch_token(run, session, config.auth)}"
    for _ in range(MAX_REDIRECTS + 1):
        trusted = _same_origin(run.origin, url)
        headers = CIMultiDict(plain)
        headers.update(credentials if trusted else {})  # case-insensitive: credentials win
        target = url
        if trusted and isinstance(config.auth, ApiKeyAuth) and config.auth.location == "query":
            target = url.update_query({config.auth.name: config.auth.value.get_secret_value()})
        response, hop = await run.send(session, method, target, headers=headers)
        async with response:
            location = response.headers.get("Location")
            if not (config.follow_redirects and response.status in REDIRECT_STATUSES and location):
                body = b"" if method == "HEAD" else await read_at_most(response, MAX_BODY_BYTES)
                return _answer(run, response, hop, len(body))
            run.redirects.append({"url": run.shown(url), "status": response.status})
        url = _next_url(url, location)
        if response.status == 303 and method != "HEAD":
            method = "GET"
    raise ProbeError(ErrorKind.PROTOCOL, f"more than {MAX_REDIRECTS} redirects", run.details())


def _next_url(current: URL, location: str) -> URL:
    from yarl import URL

    try:
        nxt = current.join(URL(location))
    except (ValueError, TypeError):
        raise ProbeError(ErrorKind.PROTOCOL, "a redirect's Location is not a valid URL") from None
    if nxt.scheme not in ("http", "https") or not nxt.raw_host:
        raise ProbeError(ErrorKind.PROTOCOL, "a redirect leads outside http and https")
    return nxt.with_user(None).with_fragment(None)


def _answer(run: _Run, response: aiohttp.ClientResponse, hop: _Hop, body_bytes: int) -> dict[str, Any]:
    details = run.details()
    details |= {
        "url": run.shown(hop.url),
        "status_code": response.status,
        "http_version": f"HTTP/{version.major}.{version.minor}" if (version := response.version) else None,
        "server": run.scrub(response.headers.get("Server", ""))[:200] or None,
        "content_type": response.headers.get("Content-Type"),
        "address": hop.peer,
        "body_bytes_read": body_bytes,
    }
    if hop.url.scheme == "https":
        details.update(certificate_details(hop.ssl_object))
    expected = run.config.expected_status
    ok = response.status in expected if expected else 200 <= response.status < 400
    if not ok:
        raise _status_failure(run, response.status, run.scrub(response.reason or "")[:80], details)
    return details


class HttpType(ConnectorType):
    """REST/HTTP APIs, tested with one real GET or HEAD on a fresh connection."""

    name: ClassVar[str] = "http"
    description: ClassVar[str] = "REST/HTTP APIs: one GET (or HEAD) with the configured auth."
    endpoint: ClassVar[EndpointRule] = EndpointRule(schemes=("http", "https"), credentials=True)
    config_model: ClassVar[type[ConnectorConfig]] = HttpConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.QUERY,
    )

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Request the endpoint; ``ProbeError`` with a precise kind when it fails."""
        config = ctx.config
        assert isinstance(config, HttpConfig)
        origin = _target(ctx.endpoint, config)
        run = _Run(ctx, config, origin, _secret_values(config, origin))
        # End just before the facade's own wait_for, so the message names the step.
        budget = max(ctx.timeout - 0.05, ctx.timeout * 0.9)
        token = _CURRENT.set(run)
        try:
            async with asyncio.timeout(budget), _session() as session:
                return ProbeOutcome(details=run.clean(await _exchange(run, session)))
        except ProbeError as exc:
            details = run.clean({**run.details(), **exc.details})
            raise ProbeError(exc.kind, run.scrub(exc.message), details) from None
        except TimeoutError:
            step = run.hops[-1].step() if run.hops else "starting"
            text = f"no answer from {run.where or 'the endpoint'} within {ctx.timeout:g} s ({step})"
            raise ProbeError(ErrorKind.TIMEOUT, text, run.details()) from None
        except Exception as exc:
            kind = error_kind(exc)
            if kind is ErrorKind.INTERNAL:
                raise
            text = run.scrub(error_text(exc, kind, run.where or "the endpoint", quote_server=True))
            raise ProbeError(kind, text, run.details()) from None
        finally:
            _CURRENT.reset(token)
