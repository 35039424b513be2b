"""Typed dependencies (``Annotated`` aliases) shared by the routes.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a
worker thread, which cost ~0.1 ms per dependency per request here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from connectord.admin import Admin, Principal
from connectord.api.limits import TestLimiter
from connectord.api.metrics import Metrics
from connectord.errors import PermissionDeniedError
from connectord.facade import ConnectorsFacade


async def get_facade(request: Request) -> ConnectorsFacade:
    """The app's facade."""
    facade: ConnectorsFacade = request.app.state.facade
    return facade


async def get_admin(request: Request) -> Admin:
    """The app's tenant and key management."""
    admin: Admin = request.app.state.admin
    return admin


async def get_limiter(request: Request) -> TestLimiter:
    """The app's per-tenant test limiter."""
    limiter: TestLimiter = request.app.state.limiter
    return limiter


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


# Parses `Authorization: Bearer` and declares the scheme in OpenAPI; a missing or
# malformed header is None here and a 401 problem from Admin.authenticate.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cdk_...`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require(scope: str) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A dependency that authenticates the key and checks one scope."""

    async def dependency(request: Request, credentials: Credentials) -> Principal:
        token = credentials.credentials if credentials is not None else None
        admin: Admin = request.app.state.admin
        principal = await admin.authenticate(token)
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

#: Text the store can hold: PostgreSQL refuses NUL in text, so an id or filter
#: holding one failed in the store (a 500) instead of matching nothing.
NO_NUL = r"^[^\x00]*$"
PathId = Annotated[str, Path(pattern=NO_NUL, description="An id this server gave.")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, pattern=r"^[A-Za-z0-9_-]*$", description="The `next_cursor` of the previous page."),
]
