"""Connector types, audit, liveness and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from connectord.api.deps import NO_NUL, Cursor, MetricsDep, Reader
from connectord.api.docs import problems
from connectord.api.metrics import CONTENT_TYPE_LATEST
from connectord.api.responses import json_response, page_response
from connectord.api.schemas import AuditPage, ConnectorTypeList, Health
from connectord.errors import NotReadyError

router = APIRouter()
_HEALTH = b'{"status":"ok"}'


@router.get(
    "/api/v1/connector-types",
    operation_id="listConnectorTypes",
    response_model=ConnectorTypeList,
    responses=problems(),
    tags=["connectors"],
    summary="Connector types",
)
async def connector_types(who: Reader) -> Response:
    """Every type with its default capabilities, config JSON Schema (secrets are `writeOnly`) and
    built-in providers, each saying whether its driver is installed and how to install it."""
    registry = who.facade.registry
    return json_response({"items": [registry.describe(t) for t in registry.types().values()]})


@router.get(
    "/api/v1/audit",
    operation_id="listAuditEvents",
    response_model=AuditPage,
    responses=problems(),
    tags=["audit"],
    summary="Audit events",
)
async def audit(
    who: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
    connector_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
) -> Response:
    """The tenant's audit events, newest first. A key narrowed to some connectors must
    give `connector_id` (one it covers): 403 otherwise."""
    return page_response(await who.facade.audit(who.tenant_id, limit, cursor, connector_id, reach=who.reach))


@router.get(
    "/healthz", operation_id="healthz", response_model=Health, tags=["operations"], summary="Liveness"
)
async def healthz() -> Response:
    """Liveness: the process answers."""
    return Response(_HEALTH, media_type="application/json")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Health,
    responses=problems(503, common=False),
    tags=["operations"],
    summary="Readiness",
)
async def readyz(request: Request) -> Response:
    """Readiness: the database answers within a bound, its schema is at head, the key ring
    is loaded, and every background task this process should run (the scheduler) runs;
    else 503 with the reason as a problem document."""
    await request.app.state.facade.check_ready()
    for check in request.app.state.readiness_checks:
        reason = check()
        if reason is not None:
            raise NotReadyError(reason)
    return Response(_HEALTH, media_type="application/json")


@router.get(
    "/metrics",
    operation_id="metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics."}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Request counts and latencies by route and status; test outcomes by type and error kind."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
