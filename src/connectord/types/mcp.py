"""The ``mcp`` type: Model Context Protocol servers over streamable HTTP or legacy SSE.

The probe uses the official SDK (``mcp`` 2.x, whose HTTP client is ``httpx2``):
it opens a session, negotiates the protocol (``server/discover``, falling back
to ``initialize``), and lists tools, resources and prompts where the server
offers them. Every HTTP request goes through :class:`PinnedTransport`, which
sends it to the address the egress policy checked while keeping the URL's
name for the ``Host`` header, SNI and certificate verification.

stdio servers are not supported: the service would have to spawn a command
from a tenant's config, which is remote code execution (``docs/mcp-probe.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from connectord.model import Capability, ErrorKind
from connectord.network import Network
from connectord.network.egress import EgressPolicy, parse_ip_literal
from connectord.network.tls import CaPem, tls_context, tls_error
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.redaction import scrub_text
from connectord.types._http_config import OAUTH_TOKEN, OAuth2ClientCredentials, OAuth2RefreshToken
from connectord.types.endpoint import EndpointRule

if TYPE_CHECKING:
    import httpx2

MAX_TOOL_NAMES = 50
MAX_PAGES = 20
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_SECRET_HEADER_NAMES = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
_SECRET_HEADER_WORDS = ("token", "secret", "key", "auth", "password", "session")
# The transport owns these; a tenant setting them would break or redirect the exchange.
_FORBIDDEN_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "mcp-session-id",
    "mcp-protocol-version",
}
STDIO_REFUSED = (
    "stdio MCP servers are not supported by the service: it would have to run a command from "
    "the connector's config (remote code execution). Expose the server over streamable HTTP or SSE."
)


def is_secret_header(name: str) -> bool:
    """Whether a header carries a credential, by name (``docs/mcp-probe.md`` has the rule)."""
    lowered = name.lower()
    return lowered in _SECRET_HEADER_NAMES or any(word in lowered for word in _SECRET_HEADER_WORDS)


#: The OAuth 2.0 grants an mcp connector may hold (the http type's models).
McpOAuth = Annotated[OAuth2ClientCredentials | OAuth2RefreshToken, Field(discriminator="kind")]


class McpConfig(ConnectorConfig):
    """Config of an ``mcp`` connector. The endpoint is the server's URL (``https://host/mcp``)."""

    transport: Literal["streamable_http", "sse"] = Field(
        default="streamable_http",
        description="streamable_http (current) or sse (legacy). stdio is not supported in the service.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers. Credential-like names (Authorization, X-Api-Key, or containing "
        "token, secret, key, auth, password, session) are moved to secret_headers.",
    )
    secret_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="HTTP headers holding credentials (write-only)."
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer <token>' (write-only)."
    )
    oauth: McpOAuth | None = Field(
        default=None,
        description="OAuth 2.0 client credentials or a refresh token: connectord obtains the access "
        "tokens (refreshed before they expire, once across replicas) and sends each as "
        "'Authorization: Bearer <token>'.",
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and name (https).")
    ca_pem: CaPem = Field(
        default=None, max_length=65536, description="Extra CA certificates (PEM text, not a path) to trust."
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_stdio_and_hide_credentials(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("transport") == "stdio" or "command" in data or "args" in data:
            raise ValueError(STDIO_REFUSED)
        headers = data.get("headers")
        if isinstance(headers, dict) and any(isinstance(k, str) and is_secret_header(k) for k in headers):
            secret = dict(data.get("secret_headers") or {})
            public = {}
            for name, value in headers.items():
                if isinstance(name, str) and is_secret_header(name):
                    secret[name] = value
                else:
                    public[name] = value
            data = {**data, "headers": public, "secret_headers": secret}
        return data

    @field_validator("headers", "secret_headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("at most 50 headers")
        for name, item in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _FORBIDDEN_HEADERS:
                raise ValueError(f"the {name} header is set by the client and cannot be configured")
            text = item.get_secret_value() if isinstance(item, SecretStr) else item
            if len(text) > 8192 or any(c in text for c in "\r\n\x00"):
                raise ValueError(f"the value of {name} must be one line of at most 8192 characters")
        return value

    @model_validator(mode="after")
    def _one_authorization(self) -> McpConfig:
        given = [
            name
            for name, present in (
                ("bearer_token", self.bearer_token is not None),
                ("an Authorization header", any(k.lower() == "authorization" for k in self.secret_headers)),
                ("oauth", self.oauth is not None),
            )
            if present
        ]
        if len(given) > 1:
            both = " and ".join(given)
            raise ValueError(f"set one of bearer_token, an Authorization header and oauth, not {both}")
        return self

    def request_headers(self, access_token: str | None = None) -> dict[str, str]:
        """Every header the client sends, secrets revealed (only ever handed to the HTTP
        client); ``access_token``: the OAuth 2.0 token obtained for ``oauth``."""
        headers = dict(self.headers)
        headers.update({k: v.get_secret_value() for k, v in self.secret_headers.items()})
        token = self.bearer_token.get_secret_value() if self.bearer_token is not None else access_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def secret_values(self) -> list[str]:
        """The secret strings, so error texts can be scrubbed of them."""
        values = [v.get_secret_value() for v in self.secret_headers.values()]
        for secret in (self.bearer_token, self.password, *_oauth_secrets(self.oauth)):
            if secret is not None:
                values.append(secret.get_secret_value())
        return [v for v in values if v]


def _oauth_secrets(oauth: McpOAuth | None) -> list[SecretStr | None]:
    if isinstance(oauth, OAuth2RefreshToken):
        return [oauth.client_secret, oauth.refresh_token]
    return [oauth.client_secret] if oauth is not None else []


@dataclass
class Traffic:
    """What the transport saw: the HTTP answers, to explain a failure the SDK flattens."""

    statuses: list[int] = field(default_factory=list)
    non_mcp_answer: bool = False

    def record(self, status: int, content_type: str) -> None:
        self.statuses.append(status)
        ctype = content_type.split(";", 1)[0].strip().lower()
        if ctype not in {"application/json", "text/event-stream", ""} and status != 202:
            self.non_mcp_answer = True


def _pinned_transport_class() -> Any:  # built on first use: httpx2 comes with the mcp extra
    import httpx2

    class PinnedTransport(httpx2.AsyncBaseTransport):
        """Sends each request to the egress-checked address of its host.

        The URL's host is replaced by the checked IP; the ``Host`` header (set
        when the request was built) and the ``sni_hostname`` extension keep the
        name, so virtual hosting, SNI and certificate verification still use it.
        A host or port not seen before (a redirect) is resolved and checked again.
        """

        def __init__(
            self, egress: EgressPolicy, pinned: dict[tuple[str, int], str], ssl_context: ssl.SSLContext
        ) -> None:
            self._egress = egress
            self._pinned = dict(pinned)
            self._inner = httpx2.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
            self.traffic = Traffic()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            host = request.url.host
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            address = self._pinned.get((host, port))
            if address is None:
                address = (await self._egress.resolve(host, port))[0].address
                self._pinned[(host, port)] = address
            if parse_ip_literal(host) is None:
                request.url = request.url.copy_with(host=address)
                request.extensions = {**request.extensions, "sni_hostname": host}
            response = await self._inner.handle_async_request(request)
            self.traffic.record(response.status_code, response.headers.get("content-type", ""))
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

    return PinnedTransport


def _parse_url(endpoint: str | None) -> tuple[str, str, int]:
    if not endpoint:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint (the MCP server's http(s) URL) is required")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is not a valid URL") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint must be an http:// or https:// URL")
    return endpoint, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


# --- error mapping ----------------------------------------------------------------------


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _chain(exc: BaseException) -> list[BaseException]:
    found = [exc]
    while len(found) < 8:
        nxt = found[-1].__cause__ or found[-1].__context__
        if nxt is None or nxt in found:
            break
        found.append(nxt)
    return found


def _status_error(status: int) -> ProbeError:
    if status in {401, 403, 407}:
        return ProbeError(ErrorKind.AUTH, f"the server refused the credentials (HTTP {status})")
    if status in {500, 502, 503, 504}:
        return ProbeError(ErrorKind.UNAVAILABLE, f"the server answered HTTP {status}")
    return ProbeError(ErrorKind.PROTOCOL, f"no MCP server answered at this URL (HTTP {status})")


def _socket_error(exc: BaseException) -> ProbeError | None:
    for link in _chain(exc):
        tls = tls_error(link)
        if tls is not None:
            return tls
        if isinstance(link, ConnectionRefusedError):
            return ProbeError(ErrorKind.REFUSED, "connection refused: nothing listens there")
    return None


def map_mcp_error(exc: BaseException, traffic: Traffic | None = None) -> ProbeError:
    """An SDK, httpx2, anyio or socket failure (or a group of them) as one :class:`ProbeError`.

    ``traffic`` is what the transport saw: the SDK turns an HTTP 401 into a
    generic JSON-RPC error, so the status code is read from there.
    """
    import anyio
    import httpx2
    import pydantic
    from mcp.client.streamable_http import StreamableHTTPError
    from mcp.shared.exceptions import MCPError

    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)] or _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, ProbeError):
            return leaf
    failed = [s for s in (traffic.statuses if traffic else []) if s >= 400]
    if any(s in {401, 403, 407} for s in failed):
        return _status_error(next(s for s in failed if s in {401, 403, 407}))
    leaf = leaves[0]
    if isinstance(leaf, httpx2.HTTPStatusError):
        return _status_error(leaf.response.status_code)
    if isinstance(leaf, MCPError | httpx2.SSEError | pydantic.ValidationError) and failed:
        return _status_error(failed[-1])
    if traffic is not None and traffic.non_mcp_answer:
        return ProbeError(ErrorKind.PROTOCOL, "the server did not answer as an MCP server")
    found = _socket_error(leaf)
    if found is not None:
        return found
    for cls, kind, text in (
        (httpx2.TimeoutException, ErrorKind.TIMEOUT, "the server did not answer in time"),
        (TimeoutError, ErrorKind.TIMEOUT, "the server did not answer in time"),
        (httpx2.UnsupportedProtocol, ErrorKind.INVALID_CONFIG, "the URL's scheme is not http or https"),
        (httpx2.InvalidURL, ErrorKind.INVALID_CONFIG, "the endpoint is not a valid URL"),
        (httpx2.ProtocolError, ErrorKind.PROTOCOL, "the server broke the HTTP protocol"),
        (httpx2.DecodingError, ErrorKind.PROTOCOL, "the server's answer could not be decoded"),
        (httpx2.TooManyRedirects, ErrorKind.PROTOCOL, "too many redirects"),
        (httpx2.ProxyError, ErrorKind.UNAVAILABLE, "the proxy failed"),
        (httpx2.TransportError, ErrorKind.UNAVAILABLE, "the connection failed"),
        (httpx2.SSEError, ErrorKind.PROTOCOL, "the server's event stream is not MCP"),
        (httpx2.StreamError, ErrorKind.PROTOCOL, "the server's answer stream broke"),
        (httpx2.CookieConflict, ErrorKind.PROTOCOL, "the server sent conflicting cookies"),
        (httpx2.HTTPError, ErrorKind.PROTOCOL, "HTTP error"),
        (anyio.BrokenResourceError, ErrorKind.UNAVAILABLE, "the connection closed"),
        (anyio.ClosedResourceError, ErrorKind.UNAVAILABLE, "the connection closed"),
        (anyio.EndOfStream, ErrorKind.UNAVAILABLE, "the connection closed"),
        (anyio.IncompleteRead, ErrorKind.PROTOCOL, "the server's answer was cut short"),
        (anyio.DelimiterNotFound, ErrorKind.PROTOCOL, "the server's answer is not framed as expected"),
        (StreamableHTTPError, ErrorKind.PROTOCOL, "the streamable HTTP exchange failed"),
        (anyio.BusyResourceError, ErrorKind.INTERNAL, "the MCP client was used concurrently"),
        (anyio.WouldBlock, ErrorKind.INTERNAL, "the MCP client stream would block"),
        (pydantic.ValidationError, ErrorKind.PROTOCOL, "the server's answer is not valid MCP"),
        (ConnectionError, ErrorKind.UNAVAILABLE, "the server closed the connection"),
        (OSError, ErrorKind.UNAVAILABLE, "the connection failed"),
    ):
        if isinstance(leaf, cls):
            return ProbeError(kind, text)
    if isinstance(leaf, MCPError):
        return _mcp_error(leaf)
    if isinstance(leaf, RuntimeError) and "protocol version" in str(leaf).lower():
        return ProbeError(ErrorKind.UNSUPPORTED, "no MCP protocol version in common with the server")
    return ProbeError(ErrorKind.INTERNAL, f"the MCP probe failed ({type(leaf).__name__})")


def _mcp_error(exc: Any) -> ProbeError:
    from mcp_types import (
        CONNECTION_CLOSED,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        PARSE_ERROR,
        REQUEST_TIMEOUT,
        UNSUPPORTED_PROTOCOL_VERSION,
    )

    code = exc.code
    text = " ".join(str(exc.message).split())[:300]
    if code == REQUEST_TIMEOUT:
        return ProbeError(ErrorKind.TIMEOUT, "the server did not answer in time")
    if code == CONNECTION_CLOSED:
        return ProbeError(ErrorKind.UNAVAILABLE, f"the connection closed: {text}")
    if code == UNSUPPORTED_PROTOCOL_VERSION:
        return ProbeError(ErrorKind.UNSUPPORTED, f"no MCP protocol version in common with the server: {text}")
    if code in {METHOD_NOT_FOUND, PARSE_ERROR, INVALID_REQUEST}:
        return ProbeError(ErrorKind.PROTOCOL, f"the server did not answer as an MCP server: {text}")
    return ProbeError(ErrorKind.PROTOCOL, f"the MCP server returned an error ({code}): {text}")


def _scrub(error: ProbeError, secrets: list[str]) -> ProbeError:
    message = scrub_text(error.message, secrets)
    return error if message == error.message else ProbeError(error.kind, message, error.details)


# --- the probe --------------------------------------------------------------------------


async def list_all(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> tuple[list[Any], bool]:
    """Every item of a paginated listing (at most ``MAX_PAGES`` pages) and whether it is complete."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            return items, True
    return items, False


def mcp_capabilities(tools: list[Any], resource_count: int, prompt_count: int) -> list[str]:
    """Capabilities from what the server offers (the rule of ``docs/mcp-probe.md``)."""
    read_only = [t for t in tools if t.annotations is not None and t.annotations.read_only_hint is True]
    found: list[str] = []
    if resource_count or prompt_count or read_only:
        found.append(str(Capability.READ))
    if len(read_only) < len(tools):
        found.append(str(Capability.WRITE))
    if tools:
        found.append(str(Capability.QUERY))
    return found


async def _session(client: Any, phases: dict[str, float]) -> tuple[dict[str, Any], list[Any]]:
    """What the probe learns from an open session, and the tools (for the capabilities)."""
    caps = client.server_capabilities
    info = client.server_info
    start = time.perf_counter()
    tools, tools_complete = (
        await list_all(lambda c: client.list_tools(cursor=c, cache_mode="bypass"), "tools")
        if caps.tools is not None
        else ([], True)
    )
    resources, _ = (
        await list_all(lambda c: client.list_resources(cursor=c, cache_mode="bypass"), "resources")
        if caps.resources is not None
        else ([], True)
    )
    prompts, _ = (
        await list_all(lambda c: client.list_prompts(cursor=c, cache_mode="bypass"), "prompts")
        if caps.prompts is not None
        else ([], True)
    )
    phases["list_ms"] = _ms(start)
    offered = [
        name for name in ("tools", "resources", "prompts", "completions", "logging") if getattr(caps, name)
    ]
    details = {
        "server_name": (info.name or None) if info is not None else None,
        "server_version": (info.version or None) if info is not None else None,
        "protocol_version": client.protocol_version,
        "server_capabilities": offered,
        "tool_count": len(tools),
        "tool_count_complete": tools_complete,
        "tool_names": [t.name for t in tools[:MAX_TOOL_NAMES]],
        "resource_count": len(resources),
        "prompt_count": len(prompts),
    }
    return details, tools


class McpType(ConnectorType):
    """Model Context Protocol servers over streamable HTTP or SSE."""

    name: ClassVar[str] = "mcp"
    description: ClassVar[str] = "Model Context Protocol servers over streamable HTTP or SSE."
    endpoint: ClassVar[EndpointRule] = EndpointRule(schemes=("http", "https"))
    config_model: ClassVar[type[ConnectorConfig]] = McpConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.QUERY,
    )

    async def prepare(self) -> None:
        """The verifying TLS context (the CA store: tens of milliseconds), built once in a thread."""
        await asyncio.to_thread(tls_context, True, None, _ALPN)

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Open a session, negotiate the protocol, list what the server offers."""
        from mcp.shared.exceptions import MCPError

        config = ctx.config
        assert isinstance(config, McpConfig)
        secrets = config.secret_values()
        try:
            async with asyncio.timeout(ctx.timeout):
                token = await _access_token(ctx, config)
                secrets += [token] if token else []
                async with open_client(
                    ctx.network, ctx.endpoint, config, ctx.timeout, "connectord-probe", token
                ) as opened:
                    details, tools = await _session(opened.client, opened.phases)
        except TimeoutError as exc:
            error = ProbeError(ErrorKind.TIMEOUT, f"no answer within {ctx.timeout:g} s")
            raise _scrub(error, secrets) from exc
        except MCPError as exc:  # the server answered a listing with an error (already scrubbed)
            raise _mcp_error(exc) from exc
        details.update(
            transport=config.transport, address=opened.address, port=opened.port, phases=opened.phases
        )
        capabilities = mcp_capabilities(tools, details["resource_count"], details["prompt_count"])
        return ProbeOutcome(details=details, capabilities=capabilities)


async def _access_token(ctx: ProbeContext, config: McpConfig) -> str | None:
    """The access token of ``config.oauth`` from the saved connector's token source (the
    facade's broker, which keeps it with the connector); None without ``oauth``."""
    if config.oauth is None:
        return None
    source = ctx.options.get(OAUTH_TOKEN)
    if source is None:
        raise ProbeError(
            ErrorKind.INVALID_CONFIG,
            "an OAuth 2.0 mcp connector is tested once saved: its access tokens are kept with it",
        )
    token: str = await source(config.oauth, config.tls_verify, config.ca_pem)
    return token


#: The TLS protocols the SDK's HTTP client offers (httpcore sets them on the context it is given).
_ALPN = ("http/1.1",)

#: Called when the SDK refuses an SSE message endpoint on another origin (see below).
_ON_OTHER_ORIGIN: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "mcp_on_other_origin", default=None
)
_OTHER_ORIGIN = "Endpoint origin does not match connection origin"


class _OtherOriginFilter(logging.Filter):
    """The SDK's SSE transport refuses a message endpoint on another origin by logging it and
    then blocks on a stream nobody reads, until the probe's timeout: its log records are the
    only early signal. They are dropped (they carry the server's URL) and end the probe."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not (record.getMessage().startswith(_OTHER_ORIGIN) or str(error).startswith(_OTHER_ORIGIN)):
            return True
        refuse = _ON_OTHER_ORIGIN.get()
        if refuse is not None:
            refuse()
        return False


_SSE_LOGGER = logging.getLogger("mcp.client.sse")
_SSE_LOGGER.addFilter(_OtherOriginFilter())


@contextlib.asynccontextmanager
async def _refused_other_origin() -> Any:
    """Turn the SDK's refusal of another origin into an immediate :class:`ProbeError`."""
    task = asyncio.current_task()
    assert task is not None
    refused: list[bool] = []

    def refuse() -> None:
        if not refused:
            refused.append(True)
            task.cancel()

    token = _ON_OTHER_ORIGIN.set(refuse)
    try:
        yield
    except asyncio.CancelledError:
        if refused and task.uncancel() == 0:
            raise ProbeError(
                ErrorKind.PROTOCOL,
                "the SSE server announced its message endpoint on another origin (refused)",
            ) from None
        raise
    finally:
        _ON_OTHER_ORIGIN.reset(token)


async def _enter_client(
    stack: contextlib.AsyncExitStack,
    config: McpConfig,
    url: str,
    transport: Any,
    bound: float,
    client_name: str,
    access_token: str | None,
) -> Any:
    """An SDK ``Client`` on ``transport``, its session open, closed with ``stack``."""
    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types import Implementation

    def http_client(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        # The SDK's SSE transport calls this with its own defaults; ours (and the bound) win.
        return httpx2.AsyncClient(
            transport=transport,
            headers=config.request_headers(access_token),
            timeout=httpx2.Timeout(bound),
            trust_env=False,
            follow_redirects=False,
        )

    if config.transport == "sse":
        connection: Any = sse_client(
            url, timeout=bound, sse_read_timeout=bound, httpx_client_factory=http_client
        )
    else:
        client = await stack.enter_async_context(http_client())
        connection = streamable_http_client(url, http_client=client)
    session = Client(
        connection,
        mode="auto",
        cache=None,
        client_info=Implementation(name=client_name, version="1"),
    )
    await stack.enter_async_context(session)
    return session


def _said_by_server(exc: Any, statuses: list[int]) -> bool:
    """Whether an SDK ``MCPError`` is a JSON-RPC error the server answered (which it
    may send with a 4xx or 5xx status), not one the SDK's client made up for a failed
    exchange (a closed stream, an HTTP error without a JSON-RPC body, a refused key)."""
    from mcp_types import (
        CONNECTION_CLOSED,
        INTERNAL_ERROR,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        PARSE_ERROR,
        REQUEST_TIMEOUT,
    )

    stand_ins = {
        (INTERNAL_ERROR, "Server returned an error response"),
        (METHOD_NOT_FOUND, "Not Found"),
        (INVALID_REQUEST, "Session terminated"),
    }
    if exc.code in {CONNECTION_CLOSED, PARSE_ERROR, REQUEST_TIMEOUT} or (exc.code, exc.message) in stand_ins:
        return False
    if str(exc.message).startswith("Unexpected content type"):
        return False
    return not any(s in {401, 403, 407} for s in statuses)


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """An SDK ``Client`` with its session open, the checked address it reached, and
    the time of each step so far (``resolve_ms``, ``connect_ms``)."""

    client: Any
    address: str
    port: int
    phases: dict[str, float]


@contextlib.asynccontextmanager
async def open_client(
    network: Network,
    endpoint: str | None,
    config: McpConfig,
    bound: float,
    client_name: str,
    access_token: str | None = None,
) -> AsyncIterator[OpenedSession]:
    """A session on a connector's server, for the probe and the MCP gateway: the host
    resolved and checked by the egress policy, every request sent to the checked address
    (:class:`PinnedTransport`), the config's headers and TLS settings, no redirects.

    A JSON-RPC error the server answered to a request made in the block (which it may
    send with a 4xx or 5xx status) is raised as the SDK's ``MCPError``, its message
    scrubbed of the config's secrets and its data dropped: the server's own answer, for
    the caller to pass on or map. Every other failure (opening the session, or the
    exchange itself) is raised as a :class:`ProbeError`, its message scrubbed the same way.
    ``bound`` (seconds) bounds the resolution and each HTTP exchange; callers bound the whole.
    ``access_token`` is the OAuth 2.0 token of ``config.oauth``, obtained by the caller.
    """
    from mcp.shared.exceptions import MCPError

    secrets = [*config.secret_values(), *([access_token] if access_token else [])]

    url, host, port = _parse_url(endpoint)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    try:
        async with asyncio.timeout(bound):
            destinations = await network.resolve(host, port)
    except TimeoutError as exc:
        raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {bound:g} s (resolving)") from exc
    phases["resolve_ms"] = _ms(start)
    address = destinations[0].address
    transport = _pinned_transport_class()(
        network.egress, {(host, port): address}, network.tls(config.tls_verify, config.ca_pem, _ALPN)
    )
    answered: MCPError | None = None
    try:
        async with contextlib.AsyncExitStack() as stack, _refused_other_origin():
            start = time.perf_counter()
            client = await _enter_client(stack, config, url, transport, bound, client_name, access_token)
            phases["connect_ms"] = _ms(start)
            opened = len(transport.traffic.statuses)
            try:
                yield OpenedSession(client, address, port, phases)
            except MCPError as exc:
                if not _said_by_server(exc, transport.traffic.statuses[opened:]):
                    raise
                # Kept aside: raised inside the block, the session's task group would wrap it.
                answered = MCPError(exc.code, scrub_text(exc.message, secrets))
    except TimeoutError as exc:
        error = ProbeError(ErrorKind.TIMEOUT, f"no answer within {bound:g} s")
        raise _scrub(error, secrets) from exc
    except Exception as exc:
        raise _scrub(map_mcp_error(exc, transport.traffic), secrets) from exc
    finally:
        await transport.aclose()
    if answered is not None:
        raise answered
