"""``/connectors/{id}/proxy/{path}``: the credential-injecting HTTP proxy (``docs/use.md``).

A thin route: the per-key rate limit, the facade's ``use_connector_cached``
(reach, status and sealed secret read on every request; the parsed config,
target and headers made once per version of the connector, by the engine's
``upstreams`` cache), then :mod:`connectord.use.proxy` forwards and streams. A
:class:`~connectord.api.routing.LeanRoute`: the key is checked (401, 403) before
the id (422) and the connector (404), without FastAPI's dependency solving. It
is left out of the OpenAPI document on purpose: its answers are the upstream's,
which no schema of this server can describe.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from connectord.api.deps import PathId, User
from connectord.api.limits import TestLimiter
from connectord.api.metrics import Metrics
from connectord.api.routing import LeanRoute
from connectord.errors import (
    ConnectordError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    ProbeError,
    ProxyError,
)
from connectord.use.proxy import HttpProxy, ProxiedResponse, ProxyRequest, Upstream

router = APIRouter(prefix="/api/v1/connectors", tags=["use"], route_class=LeanRoute)

#: Every method a connector's ``proxy_methods`` may open; the connector decides (405).
PROXY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(f"the body exceeds the proxy's {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body exceeds the proxy's {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _raw_rest(request: Request, mount: str, path: str) -> str:
    """The path after ``/proxy`` as the caller sent it (percent-encoding kept)."""
    raw = request.scope.get("raw_path")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else ""
    if text.startswith(mount):
        return text[len(mount) :]
    return "/" + quote(path) if path else ""


async def proxy(request: Request, connector_id: PathId, who: User) -> Response:
    """Forward the request to the connector's endpoint with its credentials."""
    state = request.app.state
    engine: HttpProxy = state.proxy
    limiter: TestLimiter = state.proxy_limiter
    metrics: Metrics = state.metrics
    mount = engine.mount.format(connector_id)
    hold = contextlib.AsyncExitStack()
    await hold.enter_async_context(limiter.slot(who.principal.key_id))
    connector_type = "unknown"
    try:
        info, upstream = await who.facade.use_connector_cached(
            connector_id, who.tenant_id, engine.upstreams, reach=who.reach, purpose="proxy", actor=who.actor
        )
        connector_type = info.connector_type
        if not isinstance(upstream, Upstream):
            raise upstream()
        allowed = list(dict.fromkeys(["GET", "HEAD", *upstream.config.proxy_methods]))
        if request.method not in allowed:
            raise MethodNotAllowedError(
                f"this connector allows {', '.join(allowed)} through the proxy "
                "(its config's proxy_methods opens others)",
                allowed,
            )
        body = await _body(request, who.facade.settings.proxy_max_body)
        forwarded = ProxyRequest(
            request.method,
            _raw_rest(request, mount, request.path_params.get("path", "")),
            request.scope.get("query_string", b"").decode("latin-1"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
            body,
        )
        try:
            answer = await engine.forward(upstream, forwarded)
        except ProbeError as exc:
            if isinstance(exc, ProxyError):
                raise
            raise ProxyError(exc.kind, exc.message, exc.details) from None  # from the token broker
    except BaseException as exc:
        await hold.aclose()
        if isinstance(exc, ConnectordError) and connector_type != "unknown":
            kind = exc.kind.value if isinstance(exc, ProbeError) else ""
            metrics.observe_proxy(connector_type, exc.status, kind)
        raise
    metrics.observe_proxy(connector_type, answer.status, "")
    return ProxiedResponse(answer, hold.aclose, label=connector_id)


def _add_routes() -> None:
    extra: dict[str, Any] = {"include_in_schema": False, "methods": list(PROXY_METHODS)}
    router.add_api_route("/{connector_id}/proxy/{path:path}", proxy, **extra)
    router.add_api_route("/{connector_id}/proxy", proxy, **extra)


_add_routes()
