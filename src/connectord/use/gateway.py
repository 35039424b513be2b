"""The MCP gateway: one MCP server over every ``mcp`` connector an API key may use.

``/api/v1/mcp`` (mounted by ``api/mcp.py``, which authenticates each HTTP request
and puts a :class:`GatewayCaller` in the ASGI scope) is served by the official
SDK's low-level ``Server`` behind a stateless ``StreamableHTTPSessionManager``.
Each MCP request becomes calls to the connectors' own servers, opened as the
probe opens them (:func:`connectord.types.mcp.open_client`: egress-checked and
pinned, the connector's headers, bearer token and TLS settings), each bounded
by the connector's timeout; the caller never sees a credential.

Names: :mod:`connectord.use.gateway_names`.

Listings fan out to all connectors at once (at most :data:`LIST_CONCURRENCY`
at a time) and end together within :data:`LIST_TIMEOUT` (or a connector's
shorter timeout); a server that fails or is late is left out and logged, the
others are listed. What a server lists, or that it failed, is kept
:data:`LIST_TTL` seconds per (tenant, connector, version) and read once however
many requests ask at the same time, so a call seldom needs a listing, an
agent's ``tools/list`` after ``resources/list`` costs nothing, and a server that
hangs costs one wait per :data:`LIST_TTL`; a change of the connector (a new
version) forgets it.

A call (``tools/call``, ``resources/read``, ``prompts/get``) opens a session on
the connector's server for itself (the gateway is stateless, so is each
exchange) and is bounded in all by the connector's ``timeout``, else
``CONNECTORD_GATEWAY_TIMEOUT``, at most ``CONNECTORD_PROBE_TIMEOUT_MAX``. A
server that cannot be used (down, refused, too slow, denied by the egress
policy, refusing the credentials) makes a tool call answer a tool error
(``is_error``) naming the connector and the error kind, and a resource read or
prompt an MCP error saying the same; a JSON-RPC error the server itself
answered is passed on as it said it (scrubbed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.types import Receive, Scope, Send

from connectord.errors import ConnectordError, NotFoundError, ProbeError
from connectord.facade import ConnectorsFacade
from connectord.model import ConnectorInfo, ConnectorStatus, ErrorKind, Reach
from connectord.network import Network
from connectord.paging import MAX_LIMIT
from connectord.redaction import Scrubber
from connectord.types.mcp import McpConfig, list_all, open_client
from connectord.use.gateway_names import (
    SEPARATOR,
    URI_SCHEME,
    assign_prefixes,
    exposed_name,
    exposed_uri,
    is_hashed,
    split_uri,
)

logger = logging.getLogger("connectord.gateway")

#: The ASGI scope key under which ``api/mcp.py`` hands the authenticated caller over.
CALLER_KEY: Final = "connectord.gateway.caller"
#: Seconds a server's listing is reused.
LIST_TTL: Final = 5.0
#: The longest a listing waits for one server (its own timeout when shorter).
LIST_TIMEOUT: Final = 5.0
#: Servers listed at once (the others wait their turn).
LIST_CONCURRENCY: Final = 16
#: Listings kept at most (the oldest go first).
CACHE_SIZE: Final = 10_000
_UNUSABLE = {ConnectorStatus.DISCONNECTED.value, ConnectorStatus.DEPRECATED.value}

#: Called once per exchange with an upstream server: (MCP method, outcome, error kind).
GatewayObserver = Callable[[str, str, str], None]
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class GatewayCaller:
    """Who calls the gateway: the key's tenant, reach and audit actor."""

    tenant_id: str
    reach: Reach
    actor: str


# --- listings ---------------------------------------------------------------------------


@dataclass(slots=True)
class Listing:
    """What one server offers, as it listed it (scrubbed of the connector's secrets)."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)
    expires: float = 0.0
    #: The server could not be listed (a remembered failure).
    failed: bool = False


async def _read_listing(client: Any) -> Listing:
    caps = client.server_capabilities
    listing = Listing()
    if caps.tools is not None:
        listing.tools, _ = await list_all(lambda c: client.list_tools(cursor=c, cache_mode="bypass"), "tools")
    if caps.resources is not None:
        listing.resources, _ = await list_all(
            lambda c: client.list_resources(cursor=c, cache_mode="bypass"), "resources"
        )
        listing.templates, _ = await list_all(
            lambda c: client.list_resource_templates(cursor=c, cache_mode="bypass"), "resource_templates"
        )
    if caps.prompts is not None:
        listing.prompts, _ = await list_all(
            lambda c: client.list_prompts(cursor=c, cache_mode="bypass"), "prompts"
        )
    return listing


def _clean(model: _M, scrubber: Scrubber) -> _M:
    """A server's answer with every string scrubbed of the connector's secrets."""
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return type(model).model_validate(scrubber.details(dumped))


def _scrubbed_listing(listing: Listing, scrubber: Scrubber) -> Listing:
    return Listing(
        [_clean(t, scrubber) for t in listing.tools],
        [_clean(r, scrubber) for r in listing.resources],
        [_clean(t, scrubber) for t in listing.templates],
        [_clean(p, scrubber) for p in listing.prompts],
    )


def _unknown(what: str, name: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, f"no such {what}: {name}")


def _listing_error(exc: ProbeError | TimeoutError | MCPError) -> ProbeError:
    """Why a server could not be listed: its own error, the listings' bound, or the
    JSON-RPC error it answered (already scrubbed)."""
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, TimeoutError):
        return ProbeError(ErrorKind.TIMEOUT, f"not listed within {LIST_TIMEOUT:g} s")
    return ProbeError(ErrorKind.PROTOCOL, f"the server refused the listing ({exc.code}): {exc.message}")


def _down_text(info: ConnectorInfo, error: ProbeError) -> str:
    return f"connector {info.name!r} is unavailable ({error.kind.value}): {error.message}"


# --- the gateway ------------------------------------------------------------------------


class Gateway:
    """The gateway's MCP server and its session manager (stateless, JSON answers).

    Enter :meth:`run` for the app's lifetime; :meth:`handle` serves one HTTP request
    whose scope carries a :class:`GatewayCaller` under :data:`CALLER_KEY`.
    """

    def __init__(
        self,
        facade: ConnectorsFacade,
        *,
        observe: GatewayObserver | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._facade = facade
        self._observe = observe or (lambda method, outcome, kind: None)
        self._cache: dict[tuple[str, str, int], Listing] = {}
        #: Listings being read, so requests that arrive meanwhile wait for the same one.
        self._reading: dict[tuple[str, str, int], asyncio.Future[Listing]] = {}
        self._slots = asyncio.Semaphore(LIST_CONCURRENCY)
        self.server: Server[Any] = Server(
            "connectord",
            version="1",
            instructions=(
                "The tools, resources and prompts of this tenant's MCP connectors: each tool and "
                f"prompt is named <connector>{SEPARATOR}<name>, each resource URI is "
                f"{URI_SCHEME}<connector>/<uri>."
            ),
            # Mcp-Param-* headers are not checked here: the connector's own server checks
            # the arguments, and a check here would list every server on every call.
            get_tool_input_schema=lambda name: None,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
        )
        # Stateless: every request stands alone, so any replica can serve it and no
        # session outlives a key's revocation.
        self.manager = StreamableHTTPSessionManager(
            self.server, stateless=True, json_response=True, max_request_body_size=max_body_bytes
        )

    def run(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The session manager's lifetime (enter it in the app's lifespan)."""
        return self.manager.run()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request of an authenticated caller."""
        await self.manager.handle_request(scope, receive, send)

    # --- connectors and their servers ---------------------------------------------------

    async def _visible(self, caller: GatewayCaller) -> dict[str, ConnectorInfo]:
        """The caller's usable mcp connectors, by prefix."""
        page = await self._facade.list_connectors_page(
            caller.tenant_id, connector_type="mcp", limit=MAX_LIMIT, reach=caller.reach
        )
        if page.next_cursor is not None:
            logger.warning("the gateway serves the first %d mcp connectors of a tenant only", MAX_LIMIT)
        return assign_prefixes(c for c in page.items if c.status not in _UNUSABLE)

    @contextlib.asynccontextmanager
    async def _upstream(
        self, caller: GatewayCaller, info: ConnectorInfo, bound: float | None = None
    ) -> AsyncIterator[tuple[Any, Scrubber]]:
        """An SDK client on a connector's server, and the scrubber of its secrets.

        Raises :class:`ProbeError` for any failure (the connector gone, paused or
        misconfigured included), its message free of the connector's secrets.
        """
        try:
            used = await self._facade.use_connector(
                info.id, caller.tenant_id, reach=caller.reach, purpose="gateway", actor=caller.actor
            )
            config = McpConfig.model_validate(used.config)
        except ProbeError:
            raise  # a secret reference that cannot be read: its kind says why
        except NotFoundError as exc:
            raise ProbeError(ErrorKind.NOT_FOUND, "the connector no longer exists") from exc
        except ConnectordError as exc:
            raise ProbeError(ErrorKind.UNAVAILABLE, exc.message) from exc
        except PydanticValidationError as exc:
            raise ProbeError(ErrorKind.INVALID_CONFIG, "the connector's config does not validate") from exc
        settings = self._facade.settings
        timeout = min(config.timeout or settings.gateway_timeout, settings.probe_timeout_max, bound or 1e9)
        network = Network(self._facade.egress)
        try:
            async with asyncio.timeout(timeout), contextlib.AsyncExitStack() as stack:
                token = await self._token(caller, info, config)

                async def session() -> Any:
                    opening = open_client(
                        network, used.endpoint, config, timeout, "connectord-gateway", token
                    )
                    return await stack.enter_async_context(opening)

                try:
                    opened = await session()
                except ProbeError as exc:
                    if token is None or exc.kind is not ErrorKind.AUTH:
                        raise
                    # Refused before its expiry (revoked, the server's keys rotated): one new
                    # token, one more try.
                    token = await self._token(caller, info, config, refused=token)
                    opened = await session()
                yield opened.client, Scrubber([*config.secret_values(), *([token] if token else [])])
        except TimeoutError as exc:
            raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {timeout:g} s") from exc

    async def _token(
        self, caller: GatewayCaller, info: ConnectorInfo, config: McpConfig, refused: str | None = None
    ) -> str | None:
        """The OAuth 2.0 access token of a connector with ``oauth`` (the broker's, shared
        with its tests and every replica); None without."""
        if config.oauth is None:
            return None
        return await self._facade.tokens.access_token(
            caller.tenant_id,
            info.id,
            config.oauth,
            refused=refused,
            field="oauth",
            tls_verify=config.tls_verify,
            ca_pem=config.ca_pem,
        )

    async def _listing(
        self, caller: GatewayCaller, info: ConnectorInfo, deadline: float | None = None
    ) -> Listing | None:
        """What a server offers, or None when it failed (logged); either is kept
        :data:`LIST_TTL` s, and read once however many requests ask at the same time.
        ``deadline`` (the loop's clock) ends this request's wait, not the reading."""
        key = (caller.tenant_id, info.id, info.version)
        listing = self._cache.get(key)
        if listing is None or listing.expires <= time.monotonic():
            reading = self._reading.get(key)
            if reading is None:
                reading = self._reading[key] = asyncio.ensure_future(self._read(caller, info))
                reading.add_done_callback(lambda _: self._reading.pop(key, None))
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout_at(deadline or loop.time() + LIST_TIMEOUT):
                    listing = await asyncio.shield(reading)
            except TimeoutError:
                return None  # the reading goes on, bounded by its own timeout, for the next request
        return None if listing.failed else listing

    async def _read(self, caller: GatewayCaller, info: ConnectorInfo) -> Listing:
        """Read a server's listing, within :data:`LIST_TIMEOUT` from now (a wait for a slot
        included), and remember it, or that it failed."""
        try:
            async with asyncio.timeout(LIST_TIMEOUT):
                async with self._slots, self._upstream(caller, info, LIST_TIMEOUT) as (client, scrubber):
                    listing = _scrubbed_listing(await _read_listing(client), scrubber)
        except (ProbeError, TimeoutError, MCPError) as exc:
            error = _listing_error(exc)
            logger.warning(
                "the gateway left out connector %s (%s): %s: %s",
                info.id,
                info.name,
                error.kind.value,
                error.message,
            )
            self._observe("list", "unavailable", error.kind.value)
            # Remembered too: a server that hangs costs one wait per LIST_TTL, not one per listing.
            listing = Listing(failed=True)
        else:
            self._observe("list", "ok", "")
        listing.expires = time.monotonic() + LIST_TTL
        self._remember((caller.tenant_id, info.id, info.version), listing)
        return listing

    def _remember(self, key: tuple[str, str, int], listing: Listing) -> None:
        self._cache.pop(key, None)
        self._cache[key] = listing
        if len(self._cache) > CACHE_SIZE:
            now = time.monotonic()
            for old in [k for k, v in self._cache.items() if v.expires <= now]:
                del self._cache[old]
            while len(self._cache) > CACHE_SIZE:
                del self._cache[next(iter(self._cache))]

    async def _listings(self, caller: GatewayCaller) -> list[tuple[str, Listing]]:
        """Every visible server's listing, by prefix, the failed ones left out; all of
        them within :data:`LIST_TIMEOUT`, however many wait for a slot."""
        visible = await self._visible(caller)
        deadline = asyncio.get_running_loop().time() + LIST_TIMEOUT
        found = await asyncio.gather(*(self._listing(caller, info, deadline) for info in visible.values()))
        return [
            (prefix, listing) for prefix, listing in zip(visible, found, strict=True) if listing is not None
        ]

    async def _target(self, caller: GatewayCaller, prefix: str) -> ConnectorInfo | None:
        return (await self._visible(caller)).get(prefix)

    # --- handlers -----------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools: list[types.Tool] = []
        for prefix, listing in await self._listings(_caller(ctx)):
            tools.extend(_renamed(listing.tools, prefix))
        return types.ListToolsResult(tools=tools)

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        prompts: list[types.Prompt] = []
        for prefix, listing in await self._listings(_caller(ctx)):
            prompts.extend(_renamed(listing.prompts, prefix))
        return types.ListPromptsResult(prompts=prompts)

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        resources = [
            r.model_copy(update={"uri": exposed_uri(prefix, r.uri)})
            for prefix, listing in await self._listings(_caller(ctx))
            for r in listing.resources
        ]
        return types.ListResourcesResult(resources=resources)

    async def _list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        templates = [
            t.model_copy(update={"uri_template": exposed_uri(prefix, t.uri_template)})
            for prefix, listing in await self._listings(_caller(ctx))
            for t in listing.templates
        ]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def _resolve(self, caller: GatewayCaller, name: str, what: str) -> tuple[ConnectorInfo, str]:
        """The connector and the server's own name of a gateway tool or prompt name."""
        prefix, separator, rest = name.partition(SEPARATOR)
        info = await self._target(caller, prefix) if separator and rest else None
        if info is None:
            raise _unknown(what, name)
        if exposed_name(prefix, rest) == name and not is_hashed(rest):
            return info, rest  # the name as the server gave it: no listing needed
        listing = await self._listing(caller, info)
        items = (listing.tools if what == "tool" else listing.prompts) if listing is not None else []
        for item in items:
            if exposed_name(prefix, item.name) == name:
                return info, item.name
        if listing is None:
            return info, rest  # the server is down: the call says so
        raise _unknown(what, name)

    async def _forward(
        self, method: str, caller: GatewayCaller, info: ConnectorInfo, ask: Callable[[Any], Awaitable[_M]]
    ) -> _M:
        """Ask a connector's server (``ask`` gets the SDK client); its answer scrubbed.

        Raises :class:`ProbeError` when the server cannot be used (logged and counted),
        and the server's own JSON-RPC error (``MCPError``, scrubbed) as it answered it.
        """
        try:
            async with self._upstream(caller, info) as (client, scrubber):
                answer = _clean(await ask(client), scrubber)
        except ProbeError as exc:
            self._observe(method, "unavailable", exc.kind.value)
            logger.warning(
                "gateway %s on connector %s failed: %s: %s", method, info.id, exc.kind.value, exc.message
            )
            raise
        except MCPError:
            self._observe(method, "server_error", "")
            raise
        return answer

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller = _caller(ctx)
        try:
            info, tool = await self._resolve(caller, params.name, "tool")
        except MCPError:
            self._observe("tools/call", "not_found", "")
            raise
        try:
            answer: types.CallToolResult = await self._forward(
                "tools/call", caller, info, lambda client: client.call_tool(tool, params.arguments)
            )
        except ProbeError as exc:
            # A tool error, not a JSON-RPC one: the agent (the model) reads it and can go on.
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=_down_text(info, exc))], is_error=True
            )
        self._observe("tools/call", "tool_error" if answer.is_error else "ok", "")
        return answer

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        caller = _caller(ctx)
        split = split_uri(params.uri)
        info = await self._target(caller, split[0]) if split is not None else None
        if split is None or info is None:
            self._observe("resources/read", "not_found", "")
            raise _unknown("resource", params.uri)
        prefix, inner = split
        try:
            result: types.ReadResourceResult = await self._forward(
                "resources/read", caller, info, lambda client: client.read_resource(inner)
            )
        except ProbeError as exc:
            raise MCPError(types.INTERNAL_ERROR, _down_text(info, exc)) from None
        self._observe("resources/read", "ok", "")
        contents = [c.model_copy(update={"uri": exposed_uri(prefix, c.uri)}) for c in result.contents]
        return result.model_copy(update={"contents": contents})

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        caller = _caller(ctx)
        try:
            info, prompt = await self._resolve(caller, params.name, "prompt")
        except MCPError:
            self._observe("prompts/get", "not_found", "")
            raise
        try:
            result: types.GetPromptResult = await self._forward(
                "prompts/get", caller, info, lambda client: client.get_prompt(prompt, params.arguments)
            )
        except ProbeError as exc:
            raise MCPError(types.INTERNAL_ERROR, _down_text(info, exc)) from None
        self._observe("prompts/get", "ok", "")
        return result


_Named = TypeVar("_Named", types.Tool, types.Prompt)


def _renamed(items: list[_Named], prefix: str) -> list[_Named]:
    """A server's tools (or prompts) under their gateway names, duplicates left out."""
    seen: set[str] = set()
    renamed: list[_Named] = []
    for item in items:
        name = exposed_name(prefix, item.name)
        if name in seen:
            logger.warning("two items of one server share the gateway name %r: the second is left out", name)
            continue
        seen.add(name)
        renamed.append(item.model_copy(update={"name": name}))
    return renamed


def _caller(ctx: ServerRequestContext[Any, Any]) -> GatewayCaller:
    request = ctx.request
    caller = request.scope.get(CALLER_KEY) if request is not None else None
    if not isinstance(caller, GatewayCaller):  # only api/mcp.py serves the gateway, after authenticating
        raise MCPError(types.INVALID_REQUEST, "the request was not authenticated")
    return caller
