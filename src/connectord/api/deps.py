"""Typed dependencies (``Annotated`` aliases) shared by the routes.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a
worker thread, which cost ~0.1 ms per dependency per request here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPBearer

from connectord.admin import Admin, Principal
from connectord.api.limits import TestLimiter
from connectord.api.metrics import Metrics
from connectord.errors import PermissionDeniedError
from connectord.facade import ConnectorsFacade
from connectord.model import Reach, Scope


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: the key's principal and the app's services."""

    principal: Principal
    facade: ConnectorsFacade
    admin: Admin
    limiter: TestLimiter

    @property
    def tenant_id(self) -> str:
        """The key's tenant: every call is scoped to it."""
        return self.principal.tenant_id

    @property
    def actor(self) -> str:
        """The audit actor of the key."""
        return self.principal.actor

    @property
    def reach(self) -> Reach:
        """The connectors the key covers: every route over connectors passes it on, so a
        connector outside it answers 404, as another tenant's would."""
        return self.principal.reach


class ScopedBearer(HTTPBearer):
    """Authenticates ``Authorization: Bearer <key>``, checks one scope, and hands the
    route everything it needs: one dependency per route, because each dependency
    FastAPI resolves costs tens of microseconds per request. Being an ``HTTPBearer``
    declares the scheme in OpenAPI."""

    def __init__(self, scope: Scope, *, whole_tenant: bool = False) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="HTTPBearer",
            description="An API key: `Authorization: Bearer cdk_...`.",
        )
        self.scope = scope
        #: The route acts on the whole tenant (webhooks): a narrowed key is refused.
        self.whole_tenant = whole_tenant

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        state = request.app.state
        admin: Admin = state.admin
        principal = await admin.authenticate(token.strip() if scheme.lower() == "bearer" else None)
        if self.scope not in principal.scopes:
            raise PermissionDeniedError(f"this API key lacks the {self.scope.value!r} scope")
        if self.whole_tenant and principal.reach.narrowed:
            raise PermissionDeniedError(
                "this API key is narrowed to some connectors; this route acts on the whole tenant"
            )
        return Caller(principal, state.facade, admin, state.limiter)


Reader = Annotated[Caller, Depends(ScopedBearer(Scope.READ))]
Writer = Annotated[Caller, Depends(ScopedBearer(Scope.WRITE))]
#: ``connectors:write`` on what concerns every connector of the tenant (webhooks: a webhook
#: receives every connector's events), so never with a narrowed key (docs/use.md).
TenantWriter = Annotated[Caller, Depends(ScopedBearer(Scope.WRITE, whole_tenant=True))]
Tester = Annotated[Caller, Depends(ScopedBearer(Scope.TEST))]
#: ``connectors:use``: the proxy, the MCP gateway and credential checkout (docs/use.md).
User = Annotated[Caller, Depends(ScopedBearer(Scope.USE))]
Operator = Annotated[Caller, Depends(ScopedBearer(Scope.ADMIN))]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

#: Text the store can hold: PostgreSQL refuses NUL in text, so an id or filter
#: holding one failed in the store (a 500) instead of matching nothing.
NO_NUL = r"^[^\x00]*$"
PathId = Annotated[str, Path(pattern=NO_NUL, description="An id this server gave.")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, pattern=r"^[A-Za-z0-9_-]*$", description="The `next_cursor` of the previous page."),
]
