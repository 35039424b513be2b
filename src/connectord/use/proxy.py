"""The HTTP proxy engine: forward a caller's request to an ``http`` connector with its credentials.

The route (``api/routes/proxy.py``) asks the facade for the connector (its
reach, its status, its secrets revealed) through :attr:`HttpProxy.upstreams`,
which makes an :class:`Upstream` once per version of the connector
(:meth:`HttpProxy.prepare`: the parsed config, target, headers and scrubber)
and hands this module it and a :class:`ProxyRequest`; :meth:`HttpProxy.forward`
answers a :class:`ProxyAnswer` that streams the upstream's answer back, or
raises a :class:`~connectord.errors.ProxyError` (502, 504 for a timeout) for
the proxy's own failures. What the upstream answered, 4xx and 5xx included,
passes through as it is. ``docs/use.md`` explains the rules; in short:

- **Egress on every request.** The endpoint's host is resolved and every
  address checked by the egress policy for each request; the request goes to a
  checked address (the URL carries the address, ``Host``, SNI and the
  certificate check keep the name), so the connection pool is one pool per
  checked address, and aiohttp never resolves a name itself (its resolver
  refuses all). Every new socket is checked once more when it is made.
- **Redirects are not followed.** A 3xx whose ``Location`` stays on the
  connector's origin and under its path is passed back, rewritten to the proxy's
  own URL; one that leaves it is refused (``egress_denied``): the caller could
  otherwise be sent, or send its next request, where the policy never looked.
- **Only an allow-list of request headers** goes upstream (never the caller's
  ``Authorization`` or ``Cookie``); the connector's headers and auth are added.
  Hop-by-hop headers, ``Set-Cookie`` and any header that would echo a secret are
  dropped from the answer.
- **Bounded**: the request body (the route reads at most
  ``CONNECTORD_PROXY_MAX_BODY``), the time to the upstream's headers and between
  two reads of its body, and the answer's size (``CONNECTORD_PROXY_MAX_ANSWER``:
  refused with 502 when its ``Content-Length`` says so, else the stream is cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode

from pydantic import ValidationError as PydanticValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from connectord.errors import ConnectordError, NotProxyableError, ProxyError, ValidationError
from connectord.model import ErrorKind, InUse
from connectord.network.egress import EgressPolicy, parse_ip_literal
from connectord.network.failures import aiohttp_error_kind, error_text
from connectord.network.tls import tls_context
from connectord.redaction import Scrubber
from connectord.types._http_config import (
    ApiKeyAuth,
    HttpConfig,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    auth_headers,
    secret_values,
)
from connectord.use.cache import UseCache

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

    from connectord.types._http_config import OAuth2Auth

__all__ = [
    "FORWARDED_REQUEST_HEADERS",
    "HOP_BY_HOP",
    "HttpProxy",
    "ProxiedResponse",
    "ProxyAnswer",
    "ProxyLimits",
    "ProxyRequest",
    "Refusal",
    "TokenSource",
    "Upstream",
]

logger = logging.getLogger("connectord.proxy")

#: Request headers a caller may send upstream (lower-case); every other one stays here.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-encoding",
        "content-language",
        "content-type",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "prefer",
        "range",
        "user-agent",
    }
)
#: Headers of one connection, not of the message (RFC 9110 7.6.1), never passed on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Answer headers dropped besides those: cookies are the connector's session (a credential,
#: and every connector of the server shares one origin in a browser); the server sets Date.
_DROPPED_ANSWER_HEADERS = HOP_BY_HOP | {"set-cookie", "set-cookie2", "date"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "connectord-proxy/0.1"
_CHUNK = 64 * 1024


class TokenSource(Protocol):
    """What the proxy needs of the OAuth 2.0 token broker (:class:`connectord.use.oauth.TokenBroker`)."""

    async def access_token(
        self,
        tenant_id: str,
        connector_id: str,
        auth: OAuth2Auth,
        *,
        force_refresh: bool = False,
        refused: str | None = None,
        tls_verify: bool = True,
        ca_pem: str | None = None,
    ) -> str:
        """A valid access token of the connector (see the broker)."""


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    """The proxy's bounds (from settings)."""

    max_answer: int
    timeout: float
    timeout_max: float


@dataclass(frozen=True, slots=True)
class Upstream:
    """The connector a request goes to, made once per version of it (:meth:`HttpProxy.prepare`):
    its config, secrets revealed, and what every request to it shares."""

    tenant_id: str
    connector_id: str
    config: HttpConfig = field(repr=False)
    #: The proxy's own path for this connector (``/api/v1/connectors/{id}/proxy``), for ``Location``.
    mount: str
    target: _Target = field(repr=False)
    #: The headers the connector sets over the caller's (``Host``, its own, its credentials;
    #: an OAuth 2.0 token is added per request), and their names in lower case.
    headers: dict[str, str] = field(repr=False)
    header_names: frozenset[str] = field(repr=False)
    #: The secrets a request carries (without an OAuth 2.0 token).
    secrets: _Secrets = field(repr=False)
    timeout: float
    tls: ssl.SSLContext | bool = field(repr=False)
    #: The TLS name (SNI, certificate check): the host unless it is an address.
    server_name: str | None
    oauth: bool
    #: The same with the last OAuth 2.0 token: tokens live long, a scrubber costs ~100 us to make.
    token_secrets: dict[str, _Secrets] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.target.host}:{self.target.port}"

    def secrets_with(self, token: str | None) -> _Secrets:
        """The secrets of one request: the connector's, and its token."""
        if token is None:
            return self.secrets
        found = self.token_secrets.get(token)
        if found is None:
            self.token_secrets.clear()
            found = self.token_secrets[token] = _Secrets([*self.secrets.values, token])
        return found


class _Secrets:
    """The secrets a request carries, their scrubber, and the answer header values known
    not to hold one (an upstream sends the same few values again and again)."""

    __slots__ = ("_clean", "scrubber", "values")

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.scrubber = Scrubber(values)
        self._clean: set[str] = set()

    def echoed(self, text: str) -> bool:
        """Whether ``text`` holds one of the secrets, in any encoding."""
        if not self.values or text in self._clean:
            return False
        if self.scrubber.text(text) != text:
            return True
        if len(text) <= 128 and len(self._clean) < 64:  # bounded: values are the upstream's
            self._clean.add(text)
        return False


#: What :attr:`HttpProxy.upstreams` keeps for a connector the proxy refuses (not ``http``,
#: no endpoint, a config that no longer validates): the maker of the error, so each
#: request raises its own.
Refusal = Callable[[], ConnectordError]


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """The caller's request, as the route received it."""

    method: str
    #: The path after ``/proxy``, still percent-encoded (``/v1/items%2F3``), or empty.
    raw_path: str
    #: The raw query string (without ``?``).
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes = b""


def _is_oauth(auth: object) -> bool:
    return isinstance(auth, OAuth2ClientCredentials | OAuth2RefreshToken)


@dataclass(slots=True)
class _Target:
    """Where a request goes: the connector's origin split into its parts."""

    scheme: str
    host: str
    port: int
    base_path: str
    base_query: str
    user: str | None
    password: str | None

    @classmethod
    def of(cls, endpoint: str) -> _Target:
        from yarl import URL

        try:
            url = URL(endpoint)
            port = url.port
        except (ValueError, TypeError):
            raise ProxyError(
                ErrorKind.INVALID_CONFIG, "the connector's endpoint is not a valid URL"
            ) from None
        if url.scheme not in ("http", "https") or not url.raw_host or port is None:
            raise ProxyError(ErrorKind.INVALID_CONFIG, "the connector's endpoint is not an http(s) URL")
        return cls(
            url.scheme,
            url.raw_host,
            port,
            url.raw_path.rstrip("/"),
            url.raw_query_string,
            url.user,
            url.password,
        )

    def path(self, raw_path: str) -> str:
        """The upstream path: the caller's, below the endpoint's path, never above it."""
        if not raw_path:
            return self.base_path or "/"
        if not raw_path.startswith("/"):
            raw_path = "/" + raw_path
        for segment in raw_path.split("/"):
            decoded = unquote(segment)
            if (
                decoded in (".", "..")
                or "\\" in decoded
                or any(ord(c) < 0x20 or c == "\x7f" for c in decoded)
            ):
                raise ValidationError(
                    "the proxied path may not hold '.' or '..' segments, backslashes or control characters",
                )
        return self.base_path + raw_path

    def query(self, caller: str, auth: object) -> str:
        """The endpoint's query, then the caller's, then an API key that goes in the query."""
        parts = [q for q in (self.base_query, caller) if q]
        if isinstance(auth, ApiKeyAuth) and auth.location == "query":
            name = auth.name
            kept = [
                f"{quote(k, safe='')}={quote(v, safe='')}"
                for k, v in parse_qsl("&".join(parts), keep_blank_values=True)
                if k != name
            ]
            kept.append(urlencode({name: auth.value.get_secret_value()}))
            return "&".join(kept)
        return "&".join(parts)

    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def same_origin(self, location: URL) -> bool:
        """True when a redirect stays on the connector's scheme, host, port and path prefix."""
        if location.scheme != self.scheme or (location.raw_host or "").lower() != self.host.lower():
            return False
        if location.port != self.port:
            return False
        return location.raw_path == self.base_path or location.raw_path.startswith(self.base_path + "/")


class _CheckedSocketFactory:
    """aiohttp's ``socket_factory``: every new connection's address is checked by the policy."""

    def __init__(self, egress: Callable[[], EgressPolicy]) -> None:
        self._egress = egress

    def __call__(self, addr_info: Any) -> socket.socket:
        from connectord.errors import ProbeError

        family, kind, proto, _, sockaddr = addr_info
        try:
            self._egress().check(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ProbeError as exc:
            raise OSError(exc.message) from exc
        return socket.socket(family, kind, proto)


def _refusing_resolver() -> Any:
    """A resolver that refuses every name: the proxy only ever gives aiohttp checked addresses."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    class Refusing(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            raise OSError(f"{host} was not checked by the egress policy")

        async def close(self) -> None:
            """Nothing to release."""

    return Refusing()


class HttpProxy:
    """Forwards requests to ``http`` connectors over one shared, egress-checked session.

    ``egress`` returns the policy in force (the facade's, which tests may swap);
    ``tokens`` gives OAuth 2.0 access tokens. One per app; :meth:`aclose` at shutdown.
    """

    def __init__(
        self,
        egress: Callable[[], EgressPolicy],
        limits: ProxyLimits,
        tokens: TokenSource | None = None,
        *,
        mount: str = "/api/v1/connectors/{}/proxy",
    ) -> None:
        self._egress = egress
        self.limits = limits
        self.tokens = tokens
        #: The proxy's own path of a connector, ``{}`` for its id.
        self.mount = mount
        #: Upstreams by connector, for ``ConnectorsFacade.use_connector_cached``.
        self.upstreams: UseCache[Upstream | Refusal] = UseCache(self._derive)
        self._session: aiohttp.ClientSession | None = None

    def _derive(self, use: InUse) -> Upstream | Refusal:
        info = use.info
        if info.connector_type != "http":
            return functools.partial(
                NotProxyableError,
                f"a {info.connector_type} connector cannot be proxied (only http ones can); "
                "use POST /api/v1/connectors/{id}/credentials to check its credentials out",
            )
        if not use.endpoint:
            return functools.partial(ProxyError, ErrorKind.INVALID_CONFIG, "the connector has no endpoint")
        try:
            config = HttpConfig.model_validate(use.config)
        except PydanticValidationError:
            # The stored config was valid when saved; its values (secrets) are never echoed.
            return functools.partial(
                ProxyError, ErrorKind.INVALID_CONFIG, "the connector's stored config no longer validates"
            )
        try:
            return self.prepare(info.tenant_id, info.id, use.endpoint, config)
        except ProxyError as exc:
            return functools.partial(ProxyError, exc.kind, exc.message, exc.details)

    def prepare(self, tenant_id: str, connector_id: str, endpoint: str, config: HttpConfig) -> Upstream:
        """An :class:`Upstream`: what every request to this connector shares, made once.

        :class:`ProxyError` (``invalid_config``) for an endpoint that is not an http(s) URL.
        """
        from multidict import CIMultiDict

        target = _Target.of(endpoint)
        oauth = _is_oauth(config.auth)
        # In the order a request applies them, each over the one before (names in any case).
        headers: CIMultiDict[str] = CIMultiDict({"Host": target.host_header()})
        headers.update(config.headers)
        headers.update({k: v.get_secret_value() for k, v in config.secret_headers.items()})
        if oauth:
            headers.popall("Authorization", None)  # the token's, added per request
        else:
            headers.update(auth_headers(config, target.user, target.password))
        secrets = _Secrets(secret_values(config, target.password))
        tls: ssl.SSLContext | bool = False
        if target.scheme == "https":
            tls = tls_context(config.tls_verify, config.ca_pem)
        return Upstream(
            tenant_id,
            connector_id,
            config,
            self.mount.format(connector_id),
            target,
            dict(headers.items()),
            frozenset(name.lower() for name in headers) | ({"authorization"} if oauth else set()),
            secrets,
            self.timeout_of(config),
            tls,
            None if parse_ip_literal(target.host) is not None else target.host,
            oauth,
        )

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_refusing_resolver(),
                use_dns_cache=False,
                limit=0,  # callers are bounded by the per-key limits, not by a pool-wide queue
                limit_per_host=256,
                keepalive_timeout=15,
                socket_factory=_CheckedSocketFactory(self._egress),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # the caller gets the bytes and Content-Encoding as sent
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,  # a proxy from the environment would bypass the egress check
            )
        return self._session

    async def aclose(self) -> None:
        """Close the shared session and its pooled connections; forget the upstreams."""
        self.upstreams.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def timeout_of(self, config: HttpConfig) -> float:
        """The connector's own timeout (bounded), else the proxy's."""
        if config.timeout:
            return min(config.timeout, self.limits.timeout_max)
        return self.limits.timeout

    async def forward(self, upstream: Upstream, request: ProxyRequest) -> ProxyAnswer:
        """Send the request upstream with the connector's credentials; the answer, to stream back.

        Raises :class:`ProxyError` (egress denied, refused, timeout, TLS, a refused
        redirect, an answer over the bound, no access token) and
        :class:`ValidationError` for a path that would leave the endpoint's.
        """
        path = upstream.target.path(request.raw_path)
        token: str | None = None
        if upstream.oauth:
            token = await self._token(upstream, upstream.config.auth)
        answer = await self._send(upstream, path, request, token)
        if answer.status == 401 and token is not None:
            # The token was refused before its expiry (revoked, rotated keys): one fresh try.
            await answer.close()
            token = await self._token(upstream, upstream.config.auth, refused=token)
            answer = await self._send(upstream, path, request, token)
        return answer

    async def _token(self, upstream: Upstream, auth: Any, refused: str | None = None) -> str:
        if self.tokens is None:
            raise ProxyError(ErrorKind.UNSUPPORTED, "this server has no OAuth 2.0 token broker")
        # The token endpoint is trusted as the endpoint is (a private CA serves both).
        config = upstream.config
        return await self.tokens.access_token(
            upstream.tenant_id,
            upstream.connector_id,
            auth,
            refused=refused,
            tls_verify=config.tls_verify,
            ca_pem=config.ca_pem,
        )

    @staticmethod
    def _headers(upstream: Upstream, request: ProxyRequest, token: str | None) -> dict[str, str]:
        fixed = upstream.header_names
        headers: dict[str, str] = {}
        for name, value in request.headers:
            lowered = name.lower()
            if lowered in FORWARDED_REQUEST_HEADERS and lowered not in fixed:
                headers[lowered] = value
        if "user-agent" not in headers and "user-agent" not in fixed:
            headers["User-Agent"] = _USER_AGENT
        headers.update(upstream.headers)
        if token is not None:
            headers.update(auth_headers(upstream.config, None, None, token))
        return headers

    async def _send(
        self, upstream: Upstream, path: str, request: ProxyRequest, token: str | None
    ) -> ProxyAnswer:
        import aiohttp
        from yarl import URL

        target = upstream.target
        where = upstream.where
        destinations = await _resolve(self._egress(), target)
        headers = self._headers(upstream, request, token)
        query = target.query(request.query, upstream.config.auth)
        secrets = upstream.secrets_with(token)
        timeout = upstream.timeout
        tls = upstream.tls
        session = self._client()
        last: BaseException | None = None
        for address in destinations:
            host = f"[{address}]" if ":" in address else address
            url = URL(
                f"{target.scheme}://{host}:{target.port}{path}" + (f"?{query}" if query else ""), encoded=True
            )
            try:
                async with asyncio.timeout(timeout):
                    response = await session.request(
                        request.method,
                        url,
                        headers=headers,
                        data=request.body or None,
                        allow_redirects=False,
                        ssl=tls,
                        server_hostname=upstream.server_name if tls else None,
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout),
                    )
            except TimeoutError:
                raise ProxyError(ErrorKind.TIMEOUT, f"{where} did not answer within {timeout:g} s") from None
            except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
                kind = _failure_kind(exc)
                if kind in (ErrorKind.REFUSED, ErrorKind.UNAVAILABLE) and address != destinations[-1]:
                    last = exc  # nothing was sent: the next checked address may answer
                    continue
                raise _proxy_error(exc, kind, where, secrets.scrubber) from None
            return self._answer(upstream, response, secrets)
        assert last is not None
        raise _proxy_error(last, _failure_kind(last), where, secrets.scrubber) from None

    def _answer(self, upstream: Upstream, response: aiohttp.ClientResponse, secrets: _Secrets) -> ProxyAnswer:
        target = upstream.target
        where = upstream.where
        if response.status in _REDIRECTS and "Location" in response.headers:
            location = _proxied_location(target, upstream, response.headers["Location"])
            if location is None:
                response.close()
                raise ProxyError(
                    ErrorKind.EGRESS_DENIED,
                    f"{where} redirected off the connector's endpoint (HTTP {response.status}); "
                    "the proxy passes on redirects only within the connector's origin and path",
                    {"status_code": response.status},
                )
        else:
            location = None
        length = response.content_length
        if length is not None and length > self.limits.max_answer:
            response.close()
            raise ProxyError(
                ErrorKind.PROTOCOL,
                f"{where} answered {length} bytes, more than the proxy's {self.limits.max_answer}",
                {"status_code": response.status},
            )
        dropped = _DROPPED_ANSWER_HEADERS | _connection_tokens(response)
        headers: list[tuple[bytes, bytes]] = []
        for name, value in response.raw_headers:
            lowered = name.lower()
            if lowered.decode("latin-1") in dropped:
                continue
            text = value.decode("latin-1")
            if lowered == b"location" and location is not None:
                text = location
            elif secrets.echoed(text):
                continue  # an upstream echoing a credential back: the caller never sees it
            headers.append((lowered, text.encode("latin-1")))
        return ProxyAnswer(response.status, headers, response, self.limits.max_answer, where)


def _connection_tokens(response: aiohttp.ClientResponse) -> set[str]:
    """Header names listed in ``Connection`` (hop-by-hop too, RFC 9110 7.6.1)."""
    value = response.headers.get("Connection", "")
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def _proxied_location(target: _Target, upstream: Upstream, location: str) -> str | None:
    """The proxy's own URL for a same-origin ``Location``; ``None`` when it leaves the endpoint."""
    from yarl import URL

    base = URL.build(
        scheme=target.scheme,
        host=target.host.strip("[]"),
        port=target.port,
        path=target.base_path + "/",
        encoded=True,
    )
    try:
        joined = base.join(URL(location))
    except (ValueError, TypeError):
        return None
    if not target.same_origin(joined):
        return None
    rest = joined.raw_path[len(target.base_path) :]
    auth = upstream.config.auth
    query = joined.raw_query_string
    if isinstance(auth, ApiKeyAuth) and auth.location == "query" and query:
        # The upstream may repeat the key in the redirect: it never reaches the caller.
        query = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}"
            for k, v in parse_qsl(query, keep_blank_values=True)
            if k != auth.name
        )
    return upstream.mount + (rest or "/") + (f"?{query}" if query else "")


async def _resolve(policy: EgressPolicy, target: _Target) -> list[str]:
    from connectord.errors import ProbeError

    try:
        return [d.address for d in await policy.resolve(target.host, target.port)]
    except ProbeError as exc:
        raise ProxyError(exc.kind, exc.message, exc.details) from None


def _failure_kind(exc: BaseException) -> ErrorKind:
    from connectord.network.failures import chain

    if any(isinstance(e, OSError) and "egress policy" in str(e) for e in chain(exc)):
        return ErrorKind.EGRESS_DENIED
    return aiohttp_error_kind(exc) or ErrorKind.PROTOCOL


def _proxy_error(exc: BaseException, kind: ErrorKind, where: str, scrubber: Scrubber) -> ProxyError:
    if kind is ErrorKind.EGRESS_DENIED:
        return ProxyError(kind, f"egress policy: the connection to {where} was refused")
    return ProxyError(kind, scrubber.text(error_text(exc, kind, where)))


class ProxyAnswer:
    """The upstream's answer: status and headers to send at once, then the body as it comes."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        response: aiohttp.ClientResponse,
        max_answer: int,
        where: str,
    ) -> None:
        self.status = status
        self.headers = headers
        self._response = response
        self._max = max_answer
        self._where = where

    async def body(self) -> AsyncIterator[bytes]:
        """The body in chunks; :class:`ProxyError` when it grows past the bound, stalls or breaks."""
        import aiohttp

        sent = 0
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                sent += len(chunk)
                if sent > self._max:
                    raise ProxyError(
                        ErrorKind.PROTOCOL, f"{self._where}'s answer passed the proxy's {self._max} bytes"
                    )
                yield chunk
        except TimeoutError:
            raise ProxyError(ErrorKind.TIMEOUT, f"{self._where} stopped sending its answer") from None
        except (aiohttp.ClientError, OSError) as exc:
            kind = aiohttp_error_kind(exc) or ErrorKind.PROTOCOL
            raise ProxyError(kind, f"{self._where}'s answer broke off") from None

    def complete(self) -> bool:
        """Whether the body was read to its end (the chunk last given was the last)."""
        return self._response.content.at_eof()

    async def close(self) -> None:
        """Release the connection (back to the pool when the body was read to its end)."""
        self._response.release()


class ProxiedResponse(Response):
    """Streams a :class:`ProxyAnswer`. Headers go first; a body cut short (over the bound,
    stalled, broken) ends the response without its last chunk, so the server closes the
    connection and the caller sees an incomplete answer rather than a short one.
    ``done`` runs at the end, whatever happened (the rate slot, metrics)."""

    def __init__(
        self, answer: ProxyAnswer, done: Callable[[], Any] | None = None, *, label: str = ""
    ) -> None:
        self.status_code = answer.status
        self.answer = answer
        self.raw_headers = list(answer.headers)
        self.background = None
        self._done = done
        self._label = label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            ended = False
            try:
                async for chunk in self.answer.body():
                    # The last chunk ends the response itself: one trip less through the
                    # middleware's send chain for the usual answer, read in one chunk.
                    ended = self.answer.complete()
                    await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            except ProxyError as exc:
                logger.warning(
                    "proxy %s: the answer was cut: %s (%s)", self._label, exc.kind.value, exc.message
                )
                return
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.answer.close()
            if self._done is not None:
                with contextlib.suppress(Exception):
                    result = self._done()
                    if asyncio.iscoroutine(result):
                        await result
