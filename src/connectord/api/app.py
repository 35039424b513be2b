"""The FastAPI application: routes, the error table's handlers, middleware, lifespan.

Routes never raise HTTP errors themselves: they let the core's exceptions
through, and each becomes an RFC 9457 problem document here, with the slug,
status and title its class carries (``connectord.errors``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from connectord.admin import Admin
from connectord.api.docs_pages import add_docs
from connectord.api.limits import TestLimiter
from connectord.api.mcp import MCP_PATH, McpEndpoint
from connectord.api.metrics import Metrics
from connectord.api.middleware import RequestMiddleware
from connectord.api.problems import HTTP_SLUGS, class_problem, error_problem, problem
from connectord.api.routes import (
    bulk,
    connectors,
    credentials,
    health,
    meta,
    proxy,
    secrets,
    tenants,
    webhooks,
)
from connectord.console import console_routes
from connectord.errors import ConnectordError, ValidationError
from connectord.facade import ConnectorsFacade
from connectord.health.service import HealthService
from connectord.notify.delivery import DeliveryWorker
from connectord.settings import Settings
from connectord.use.gateway import Gateway
from connectord.use.proxy import HttpProxy, ProxyLimits

logger = logging.getLogger("connectord.api")


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


async def _on_core_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConnectordError)
    return error_problem(exc, _request_id(request))


async def _on_invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())],
            "msg": str(err.get("msg")),
        }
        for err in exc.errors()
    ]
    malformed = any(err.get("type") == "json_invalid" for err in exc.errors())
    detail = "the body is not valid JSON" if malformed else "the request does not validate; see errors"
    return class_problem(ValidationError, detail, request_id=_request_id(request), errors=errors)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's 400 for a body it cannot decode (not UTF-8): malformed input is 422 here.
        errors = [{"loc": ["body"], "msg": "is not valid UTF-8 JSON"}]
        detail = "the body is not valid JSON"
        return class_problem(ValidationError, detail, request_id=_request_id(request), errors=errors)
    slug, title = HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return problem(exc.status_code, slug, title, detail, request_id=_request_id(request), headers=headers)


def _allowed_methods(request: Request) -> str:
    """The methods of the resource at this path: Starlette's 405 names only the first
    matching route's. A literal route (``/connectors/test``) is the resource there,
    not the templated one it also matches (``/connectors/{connector_id}``)."""
    path = request.scope["path"]
    routes = request.app.router.routes
    matching = [r for r in routes if isinstance(r, Route) and r.methods and r.path_regex.match(path)]
    literal = [r for r in matching if not r.param_convertors]
    methods: set[str] = set()
    for route in literal or matching:
        methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # A last resort for failures in the middleware itself (RequestMiddleware answers
    # the app's own). The class name only: a driver's message could carry a secret.
    logger.error("unhandled %s (request %s)", type(exc).__name__, _request_id(request))
    return class_problem(ConnectordError, ConnectordError.title, request_id=_request_id(request))


async def _stop_background(monitor: HealthService, deliveries: DeliveryWorker | None) -> None:
    """Stop the scheduler first (its leases released for the other replicas), then the sender."""
    await monitor.stop()
    if deliveries is not None:
        await deliveries.stop()


def _on_exit_signals(stop: Callable[[], object]) -> None:
    """On SIGTERM or SIGINT, stop the background work at once, while uvicorn drains the
    requests in flight (``CONNECTORD_DRAIN_TIMEOUT``): the other replicas take this one's
    scheduled checks now rather than after the drain (docs/operations.md)."""
    if threading.current_thread() is not threading.main_thread():
        return  # an app served from a thread (tests) gets no signals
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(number: int, frame: FrameType | None, previous: Callable[..., object] = previous) -> None:
            loop.call_soon_threadsafe(stop)
            previous(number, frame)

        signal.signal(sig, handler)


def create_app(settings: Settings | None = None, facade: ConnectorsFacade | None = None) -> FastAPI:
    """The ASGI app, on the given settings (default: the environment)."""
    settings = settings or Settings()
    facade = facade or ConnectorsFacade(settings=settings)
    metrics = Metrics()
    facade.test_observers.append(metrics.observe_test)
    facade.use_observers.append(metrics.observe_use)

    # Webhook deliveries (docs/webhooks.md): this process sends the outbox unless told not to.
    deliveries = DeliveryWorker(facade) if settings.webhooks == "on" else None
    # Scheduled checks and history retention (docs/health.md), as CONNECTORD_SCHEDULER says.
    monitor = HealthService(facade, role="connectord serve")
    # The MCP gateway (docs/use.md): its session manager runs for the app's lifetime.
    gateway = Gateway(facade, observe=metrics.observe_gateway, max_body_bytes=settings.max_body_bytes)
    # The HTTP proxy (docs/use.md): one pooled, egress-checked session for the app's lifetime.
    limits = ProxyLimits(settings.proxy_max_answer, settings.proxy_timeout, settings.probe_timeout_max)
    http_proxy = HttpProxy(lambda: facade.egress, limits, tokens=facade.tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await facade.start()
        if deliveries is not None:
            deliveries.start()
        await monitor.start()
        # Everything loaded so far lives as long as the process: move it out of the
        # collector's reach, so full collections stop walking it (latency tails).
        gc.collect()
        gc.freeze()
        stopping: asyncio.Future[None] | None = None

        def stop_background() -> asyncio.Future[None]:
            nonlocal stopping
            if stopping is None:
                stopping = asyncio.ensure_future(_stop_background(monitor, deliveries))
            return stopping

        _on_exit_signals(stop_background)
        try:
            async with gateway.run():
                yield
        finally:
            await stop_background()
            await console.close()
            await http_proxy.aclose()
            await facade.aclose()

    app = FastAPI(
        title="connectord",
        version="1",
        summary="A multi-tenant connector registry that really tests each connector.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # served offline: docs_pages
        redoc_url=None,
        # A redirect from /connectors/ to /connectors would answer a get-by-id with a list.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry hooks off: with a provider configured they would
        # record exception messages (which may carry a secret: connectord logs the class
        # only), and asking whether one is configured cost each request ~2 % of its CPU
        # (bench/README.md, issue 15). /metrics is connectord's own.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.facade = facade
    app.state.admin = Admin(facade)
    app.state.limiter = TestLimiter(settings.test_rate_per_minute, settings.test_concurrency)
    app.state.metrics = metrics
    app.state.proxy = http_proxy
    app.state.proxy_limiter = TestLimiter(
        settings.proxy_rate, settings.proxy_concurrency, what="proxied requests"
    )
    #: Callables answering why this process is not ready (None when it is); /readyz asks each.
    app.state.readiness_checks = []
    app.state.monitor = monitor
    app.state.readiness_checks.append(monitor.problem)
    # The routers' routes go straight onto the app, busiest first: this FastAPI
    # version wraps an included router in its own dispatch layer, which cost
    # ~0.1 ms per request, and the router tries routes in order.
    for module in (connectors, proxy, meta, tenants, webhooks, health, bulk, secrets, credentials):
        app.router.routes.extend(module.router.routes)
    # The gateway's requests per key are bounded as the proxy's are (a bucket of their own).
    gateway_limiter = TestLimiter(
        settings.proxy_rate, settings.proxy_concurrency, what="MCP gateway requests"
    )
    app.router.routes.append(Route(MCP_PATH, McpEndpoint(gateway, app.state.admin, gateway_limiter)))
    add_docs(app, "/openapi.json")
    # The web console at / (docs/console.md), after the API's routes: its pages carry their
    # own security headers (a strict Content-Security-Policy, X-Frame-Options: DENY...).
    console, console_pages = console_routes(facade, app.state.admin, app.state.limiter)
    app.router.routes.extend(console_pages)
    app.state.console = console
    app.add_exception_handler(ConnectordError, _on_core_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app
