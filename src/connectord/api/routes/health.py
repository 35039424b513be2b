"""``GET /connectors/{id}/health``: a connector's health summary (docs/health.md)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from connectord.api.deps import PathId, Reader
from connectord.api.docs import problems
from connectord.api.responses import json_response
from connectord.api.schemas import HealthOut

router = APIRouter(prefix="/api/v1/connectors", tags=["health"])


@router.get(
    "/{connector_id}/health",
    operation_id="connectorHealth",
    response_model=HealthOut,
    responses=problems(404),
    summary="A connector's health",
)
async def connector_health(connector_id: PathId, who: Reader) -> Response:
    """Uptime over 1 h, 24 h and 7 d, latency p50/p95 over 24 h, checks counted, the last
    error, the current status and since when it holds, consecutive failures: computed now
    from the connector's kept test history."""
    summary = await who.facade.health(connector_id, who.tenant_id, reach=who.reach)
    return json_response(summary.to_dict())
