"""Typed dependencies (``Annotated`` aliases) shared by the routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from connectord.admin import Admin, Principal
from connectord.api.limits import TestLimiter
from connectord.api.metrics import Metrics
from connectord.errors import PermissionDeniedError
from connectord.facade import ConnectorsFacade


def get_facade(request: Request) -> ConnectorsFacade:
    """The app's facade."""
    facade: ConnectorsFacade = request.app.state.facade
    return facade


def get_admin(request: Request) -> Admin:
    """The app's tenant and key management."""
    admin: Admin = request.app.state.admin
    return admin


def get_limiter(request: Request) -> TestLimiter:
    """The app's per-tenant test limiter."""
    limiter: TestLimiter = request.app.state.limiter
    return limiter


def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the key and checks one scope."""

    async def dependency(request: Request) -> Principal:
        principal = await get_admin(request).authenticate(_bearer(request))
        if scope not in principal.scopes:
            raise PermissionDeniedError(f"this API key lacks the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


Facade = Annotated[ConnectorsFacade, Depends(get_facade)]
AdminDep = Annotated[Admin, Depends(get_admin)]
Limiter = Annotated[TestLimiter, Depends(get_limiter)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Reader = Annotated[Principal, Depends(require("connectors:read"))]
Writer = Annotated[Principal, Depends(require("connectors:write"))]
Tester = Annotated[Principal, Depends(require("connectors:test"))]
Operator = Annotated[Principal, Depends(require("admin"))]
