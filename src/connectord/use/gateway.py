"""The MCP gateway: one MCP server over every ``mcp`` connector an API key may use.

``/api/v1/mcp`` (mounted by ``api/mcp.py``, which authenticates each HTTP request
and puts a :class:`GatewayCaller` in the ASGI scope) is served by the official
SDK's low-level ``Server`` behind a stateless ``StreamableHTTPSessionManager``.
Each MCP request becomes calls to the connectors' own servers, opened as the
probe opens them (:func:`connectord.types.mcp.open_client`: egress-checked and
pinned, the connector's headers, bearer token and TLS settings), each bounded
by the connector's timeout; the caller never sees a credential.

Names (``docs/use.md``, "The MCP gateway"). A connector's *prefix* is its name
when that name is plain (ASCII letters, digits, ``-`` and single ``_``, not at
either end, at most 32 characters); otherwise, or when two visible connectors
would share one, it is the name with every other run of characters made one
``_``, cut to 23 characters, then ``-`` and 8 hex digits of the connector id's
SHA-256. A tool or prompt is exposed as ``<prefix>__<name>`` when its name is
made of ``[A-Za-z0-9_-]`` and the whole fits 64 characters (what every MCP
client and LLM API accepts); otherwise its name is made the same way (cut to
fit, ``-`` and 8 hex digits of the name's SHA-256). The prefix never holds
``__``, so the first ``__`` splits a name back. A resource (or template) URI
is exposed as ``connectord://<prefix>/<the server's URI, unchanged>``.

Listings fan out to all connectors at once, each bounded by
:data:`LIST_TIMEOUT` (or the connector's shorter timeout); a server that fails
is left out and logged, the others are listed. What a server lists is kept
:data:`LIST_TTL` seconds per (tenant, connector, version), so a call seldom
needs a listing and an agent's ``tools/list`` after ``resources/list`` costs
nothing; a change of the connector (a new version) forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
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
from connectord.types.mcp import McpConfig, open_client

logger = logging.getLogger("connectord.gateway")

#: The ASGI scope key under which ``api/mcp.py`` hands the authenticated caller over.
CALLER_KEY: Final = "connectord.gateway.caller"
#: Joins a connector's prefix and a tool's (or prompt's) name.
SEPARATOR: Final = "__"
#: The scheme of the resource URIs the gateway exposes.
URI_SCHEME: Final = "connectord://"
#: Seconds a server's listing is reused.
LIST_TTL: Final = 5.0
#: The longest a listing waits for one server (its own timeout when shorter).
LIST_TIMEOUT: Final = 5.0
#: Servers listed at once (the others wait their turn).
LIST_CONCURRENCY: Final = 16
#: Listings kept at most (the oldest go first).
CACHE_SIZE: Final = 10_000
#: Pages read from one server's listing at most.
MAX_PAGES: Final = 20
NAME_MAX: Final = 64
PREFIX_MAX: Final = 32
_DIGEST = 8
_PLAIN_PREFIX = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")
_PLAIN_ITEM = re.compile(r"^[A-Za-z0-9_-]+$")
_OTHER = re.compile(r"[^A-Za-z0-9-]+")
_HASHED = re.compile(r"-[0-9a-f]{8}$")
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


# --- names ------------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST]


def _made_plain(text: str, room: int) -> str:
    return _OTHER.sub("_", text)[:room].strip("_")


def hashed_prefix(info: ConnectorInfo) -> str:
    """The prefix of a connector whose name is not plain (or shared): made plain, cut, hashed id."""
    base = _made_plain(info.name, PREFIX_MAX - _DIGEST - 1) or "c"
    return f"{base}-{_digest(info.id)}"


def preferred_prefix(info: ConnectorInfo) -> str:
    """A connector's prefix when no other visible connector claims the same."""
    if len(info.name) <= PREFIX_MAX and _PLAIN_PREFIX.match(info.name):
        return info.name
    return hashed_prefix(info)


def assign_prefixes(connectors: Iterable[ConnectorInfo]) -> dict[str, ConnectorInfo]:
    """Each connector by its prefix; connectors that would share one all take the hashed form."""
    chosen = [(preferred_prefix(c), c) for c in connectors]
    counts: dict[str, int] = {}
    for prefix, _ in chosen:
        counts[prefix] = counts.get(prefix, 0) + 1
    found: dict[str, ConnectorInfo] = {}
    for prefix, info in chosen:
        final = hashed_prefix(info) if counts[prefix] > 1 else prefix
        if final in found:  # two ids with one digest: neither can be named reliably
            logger.warning(
                "connectors %s and %s share the gateway prefix %r", found[final].id, info.id, final
            )
            continue
        found[final] = info
    return found


def exposed_name(prefix: str, name: str) -> str:
    """The gateway's name of a server's tool or prompt."""
    full = f"{prefix}{SEPARATOR}{name}"
    if len(full) <= NAME_MAX and _PLAIN_ITEM.match(name):
        return full
    room = NAME_MAX - len(prefix) - len(SEPARATOR) - _DIGEST - 1
    return f"{prefix}{SEPARATOR}{_made_plain(name, room)}-{_digest(name)}"


def exposed_uri(prefix: str, uri: str) -> str:
    """The gateway's URI of a server's resource (or URI template)."""
    return f"{URI_SCHEME}{prefix}/{uri}"


def split_uri(uri: str) -> tuple[str, str] | None:
    """(prefix, the server's URI) of a gateway URI; None when it is not one."""
    if not uri.startswith(URI_SCHEME):
        return None
    prefix, slash, inner = uri[len(URI_SCHEME) :].partition("/")
    return (prefix, inner) if slash and prefix and inner else None


# --- listings ---------------------------------------------------------------------------


@dataclass(slots=True)
class Listing:
    """What one server offers, as it listed it (scrubbed of the connector's secrets)."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)
    expires: float = 0.0


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


async def _read_listing(client: Any) -> Listing:
    caps = client.server_capabilities
    listing = Listing()
    if caps.tools is not None:
        listing.tools = await _all_pages(lambda c: client.list_tools(cursor=c, cache_mode="bypass"), "tools")
    if caps.resources is not None:
        listing.resources = await _all_pages(
            lambda c: client.list_resources(cursor=c, cache_mode="bypass"), "resources"
        )
        listing.templates = await _all_pages(
            lambda c: client.list_resource_templates(cursor=c, cache_mode="bypass"), "resource_templates"
        )
    if caps.prompts is not None:
        listing.prompts = await _all_pages(
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
        timeout = min(config.timeout or settings.probe_timeout, settings.probe_timeout_max, bound or 1e9)
        secrets = config.secret_values()
        if config.password is not None:
            secrets.append(config.password.get_secret_value())
        scrubber = Scrubber(secrets)
        network = Network(self._facade.egress)
        try:
            async with asyncio.timeout(timeout):
                async with open_client(
                    network, used.endpoint, config, timeout, "connectord-gateway"
                ) as client:
                    yield client, scrubber
        except TimeoutError as exc:
            raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {timeout:g} s") from exc

    async def _listing(self, caller: GatewayCaller, info: ConnectorInfo) -> Listing | None:
        """What a server offers (kept :data:`LIST_TTL` s); None, logged, when it fails."""
        key = (caller.tenant_id, info.id, info.version)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            return cached
        try:
            async with self._slots, self._upstream(caller, info, LIST_TIMEOUT) as (client, scrubber):
                listing = _scrubbed_listing(await _read_listing(client), scrubber)
        except ProbeError as exc:
            logger.warning(
                "the gateway left out connector %s (%s): %s: %s",
                info.id,
                info.name,
                exc.kind.value,
                exc.message,
            )
            self._observe("list", "unavailable", exc.kind.value)
            return None
        self._observe("list", "ok", "")
        listing.expires = time.monotonic() + LIST_TTL
        self._remember(key, listing)
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
        """Every visible server's listing, by prefix, the failed ones left out."""
        visible = await self._visible(caller)
        found = await asyncio.gather(*(self._listing(caller, info) for info in visible.values()))
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
        if exposed_name(prefix, rest) == name and not _HASHED.search(rest):
            return info, rest  # the name as the server gave it: no listing needed
        listing = await self._listing(caller, info)
        items = (listing.tools if what == "tool" else listing.prompts) if listing is not None else []
        for item in items:
            if exposed_name(prefix, item.name) == name:
                return info, item.name
        if listing is None:
            return info, rest  # the server is down: the call says so
        raise _unknown(what, name)

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
            async with self._upstream(caller, info) as (client, scrubber):
                result: types.CallToolResult = await client.call_tool(tool, params.arguments)
                answer = _clean(result, scrubber)
        except ProbeError as exc:
            self._observe("tools/call", "unavailable", exc.kind.value)
            logger.warning("gateway call to connector %s failed: %s", info.id, exc.kind.value)
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
            async with self._upstream(caller, info) as (client, scrubber):
                read: types.ReadResourceResult = await client.read_resource(inner)
                result = _clean(read, scrubber)
        except ProbeError as exc:
            self._observe("resources/read", "unavailable", exc.kind.value)
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
            async with self._upstream(caller, info) as (client, scrubber):
                got: types.GetPromptResult = await client.get_prompt(prompt, params.arguments)
                result = _clean(got, scrubber)
        except ProbeError as exc:
            self._observe("prompts/get", "unavailable", exc.kind.value)
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
