"""The ``http`` type: REST/HTTP APIs, tested with one real ``GET`` (or ``HEAD``).

The probe resolves the host through the egress policy, connects to the
checked address over a fresh connection (the lean client of
:mod:`connectord.network.lean_http`, which connects only to the addresses the
policy checked, so there is no second DNS lookup; TLS still verifies the
name), follows redirects itself so each hop is checked again, and reports
the status, HTTP version, server, TLS version and certificate expiry, the
redirect chain and the time of each phase.
``docs/http-probe.md`` explains the choices (client, defaults, error kinds).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from connectord.model import Capability, ErrorKind
from connectord.network.egress import parse_ip_literal
from connectord.network.failures import aiohttp_error_kind, error_text
from connectord.network.lean_http import Request, Response, TransportError, fetch
from connectord.network.tls import certificate_details
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.redaction import Scrubber, redact_url
from connectord.timing import ms_between
from connectord.types._http_config import (
    HTTP_TOKEN,
    MAX_REDIRECTS,
    OAUTH_TOKEN,
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    HttpConfig,
    NoAuth,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    auth_headers,
    basic_credentials,
    is_credential_header,
    secret_values,
)
from connectord.types.endpoint import EndpointRule

if TYPE_CHECKING:
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
#: The client speaks HTTP/1.1 only: say so in the handshake.
ALPN = ("http/1.1",)
_LINE_BREAK = re.compile(r"[\r\n\x00]")


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


@dataclass(slots=True)
class _Run:
    """One test: its config, the secrets to keep out of every text, and what it saw."""

    ctx: ProbeContext
    config: HttpConfig
    origin: URL
    secrets: list[str]
    hops: list[_Hop] = field(default_factory=list)
    redirects: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    where: str = ""
    #: Built once per run (and again when a token joins the secrets): a probe scrubs often.
    scrubber: Scrubber | None = None

    def add_secret(self, value: str) -> None:
        """Keep ``value`` (a token fetched during the run) out of every text too."""
        self.secrets.append(value)
        self.scrubber = None

    def _scrubber(self) -> Scrubber:
        if self.scrubber is None:
            self.scrubber = Scrubber(self.secrets)
        return self.scrubber

    def scrub(self, text: str) -> str:
        """The text with every secret, in every encoding, replaced."""
        return self._scrubber().text(text) if self.secrets else text

    def shown(self, url: URL) -> str:
        """A URL as reported: no user info, credential parameters masked by name, no secret."""
        auth = self.config.auth
        named = [auth.name] if isinstance(auth, ApiKeyAuth) and auth.location == "query" else []
        return self.scrub(redact_url(str(url), named))

    def clean(self, details: dict[str, Any]) -> dict[str, Any]:
        """``details`` scrubbed of every secret, including an access token fetched during the
        run, which the runner never sees: a server may echo it into any header we report."""
        if not self.secrets:
            return details
        scrubbed: dict[str, Any] = self._scrubber().details(details)
        return scrubbed

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
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        *,
        form: Mapping[str, str] | None = None,
        keep_body: bool = False,
        redirects: frozenset[int] = frozenset(),
    ) -> tuple[Response, _Hop]:
        """Check the URL's host with the egress policy and send one request to a checked address.

        ``redirects``: the statuses followed; such an answer with a ``Location`` is
        taken at its headers (its body is never read).
        """
        host, port = url.raw_host or "", url.port or (443 if url.scheme == "https" else 80)
        self.where = f"{url.host}:{port}"
        hop = _Hop(url, resolve_start=time.perf_counter())
        self.hops.append(hop)
        destinations = await self.ctx.network.resolve(host, port)
        hop.resolve_end = time.perf_counter()
        literal = parse_ip_literal(host)
        if literal is not None:  # a legacy spelling is sent (Host, SNI) in its checked form
            url = url.with_host(str(literal))
        tls = None
        if url.scheme == "https":
            tls = self.ctx.network.tls(self.config.tls_verify, self.config.ca_pem, ALPN)
        request = Request(
            _request_bytes(method, url, headers, form),
            head=method == "HEAD",
            body_limit=MAX_BODY_BYTES,
            keep_body=keep_body,
            redirects=redirects,
        )
        response = await fetch(
            destinations, request, hop, where=self.where, tls=tls, server_hostname=url.raw_host
        )
        return response, hop


def _request_bytes(
    method: str, url: URL, headers: Mapping[str, str], form: Mapping[str, str] | None
) -> bytes:
    """The request as sent: line, ``Host``, the headers, a form body if any, ``Connection: close``."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}"]
    for name, value in headers.items():
        # Config values are validated; a value from a server (an access token) is checked here.
        if _LINE_BREAK.search(value):
            raise ProbeError(ErrorKind.PROTOCOL, f"the {name} header to send holds a line break")
        lines.append(f"{name}: {value}")
    body = b""
    if form is not None:
        body = urlencode(form).encode()
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


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


def _same_origin(a: URL, b: URL) -> bool:
    """Credentials follow a redirect only to the same origin, or its upgrade to https."""
    if (a.raw_host or "").lower().rstrip(".") != (b.raw_host or "").lower().rstrip("."):
        return False
    upgrade = (a.scheme, b.scheme) == ("http", "https") and b.port == 443
    return upgrade or (a.scheme, a.port) == (b.scheme, b.port)


async def _fetch_token(run: _Run, auth: OAuth2ClientCredentials) -> str:
    """A fresh access token from the token endpoint (itself checked by the egress policy)."""
    from yarl import URL

    form = {"grant_type": "client_credentials"}
    form |= {k: v for k, v in (("scope", auth.scope), ("audience", auth.audience)) if v}
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    secret = auth.client_secret.get_secret_value()
    if auth.client_auth == "basic":  # RFC 6749 2.3.1: form-encode both before Basic
        headers["Authorization"] = basic_credentials(quote(auth.client_id, safe=""), quote(secret, safe=""))
    else:
        form |= {"client_id": auth.client_id, "client_secret": secret}
    started = time.perf_counter()
    response, _ = await run.send("POST", URL(auth.token_url), headers, form=form, keep_body=True)
    body = response.body
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
    run.add_secret(token)
    return token


async def _stored_token(run: _Run, auth: OAuth2RefreshToken) -> str:
    """The saved connector's access token, from the token source the runner was given."""
    source = run.ctx.options.get(OAUTH_TOKEN)
    if source is None:
        raise ProbeError(
            ErrorKind.INVALID_CONFIG,
            "a refresh-token connector is tested once saved: its access tokens are kept with it",
        )
    started = time.perf_counter()
    token: str = await source(auth, run.config.tls_verify, run.config.ca_pem)
    run.phases["auth_ms"] = ms_between(started, time.perf_counter())
    run.add_secret(token)
    return token


def _status_failure(run: _Run, status: int, reason: str, details: dict[str, Any]) -> ProbeError:
    expected = run.config.expected_status
    wanted = ", ".join(map(str, expected)) if expected else "2xx or 3xx"
    if status in (401, 403):
        text = f"{run.where} answered {status} {reason}: the credentials were refused or are missing"
        return ProbeError(ErrorKind.AUTH, run.scrub(text), details)
    text = f"{run.where} answered {status} {reason}, expected {wanted}"
    return ProbeError(ErrorKind.UNEXPECTED_STATUS, run.scrub(text), details)


async def _exchange(run: _Run) -> dict[str, Any]:
    """Request the endpoint, following redirects; the details of the final answer."""
    from multidict import CIMultiDict

    config = run.config
    url = run.origin.with_user(None)
    method: str = config.method
    plain = {"User-Agent": USER_AGENT, "Accept": "*/*", **config.headers}
    credentials = {k: v.get_secret_value() for k, v in config.secret_headers.items()}
    credentials |= auth_headers(config, run.origin.user, run.origin.password)
    if isinstance(config.auth, OAuth2ClientCredentials):
        credentials["Authorization"] = f"Bearer {await _fetch_token(run, config.auth)}"
    elif isinstance(config.auth, OAuth2RefreshToken):
        credentials["Authorization"] = f"Bearer {await _stored_token(run, config.auth)}"
    for _ in range(MAX_REDIRECTS + 1):
        trusted = _same_origin(run.origin, url)
        headers = CIMultiDict(plain)
        headers.update(credentials if trusted else {})  # case-insensitive: credentials win
        target = url
        if trusted and isinstance(config.auth, ApiKeyAuth) and config.auth.location == "query":
            target = url.update_query({config.auth.name: config.auth.value.get_secret_value()})
        followed = REDIRECT_STATUSES if config.follow_redirects else frozenset()
        response, hop = await run.send(method, target, headers, redirects=followed)
        location = response.headers.get("location")
        if not (response.status in followed and location):
            return _answer(run, response, hop)
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


def _answer(run: _Run, response: Response, hop: _Hop) -> dict[str, Any]:
    details = run.details()
    details |= {
        "url": run.shown(hop.url),
        "status_code": response.status,
        "http_version": f"HTTP/{response.version}",
        "server": run.scrub(response.headers.get("server", ""))[:200] or None,
        "content_type": response.headers.get("content-type"),
        "address": hop.peer,
        "body_bytes_read": response.body_bytes,
    }
    if hop.url.scheme == "https":
        details.update(certificate_details(hop.ssl_object))
    expected = run.config.expected_status
    ok = response.status in expected if expected else 200 <= response.status < 400
    if not ok:
        raise _status_failure(run, response.status, run.scrub(response.reason)[:80], details)
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
        run = _Run(ctx, config, origin, secret_values(config, origin.password))
        # End just before the facade's own wait_for, so the message names the step.
        budget = max(ctx.timeout - 0.05, ctx.timeout * 0.9)
        try:
            async with asyncio.timeout(budget):
                return ProbeOutcome(details=run.clean(await _exchange(run)))
        except TransportError as exc:
            raise ProbeError(exc.kind, run.scrub(exc.message), run.clean(run.details())) from None
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
