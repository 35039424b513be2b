"""``POST /connectors/bulk-test`` and ``GET /bulk-tests/{id}``: bulk tests the server runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from starlette.responses import Response

from connectord.api.deps import PathId, Reader, Tester
from connectord.api.docs import problems
from connectord.api.responses import json_response
from connectord.api.schemas import BulkTestCreate, BulkTestOut
from connectord.errors import NotFoundError

router = APIRouter(prefix="/api/v1", tags=["bulk tests"])


@router.post(
    "/connectors/bulk-test",
    status_code=202,
    operation_id="startBulkTest",
    response_model=BulkTestOut,
    responses=problems(409, 413, 429),
    summary="Test many connectors in the background",
)
async def start_bulk_test(who: Tester, body: Annotated[BulkTestCreate | None, Body()] = None) -> Response:
    """Test every matching connector (deprecated ones excluded), each result recorded in
    its history; answers at once with the bulk test and its `Location`. Without a body,
    every connector of the tenant. 409 while another bulk test of the tenant runs here."""
    body = body or BulkTestCreate()
    # One token of the tenant's test rate: the bulk test itself is bounded by its concurrency.
    async with who.limiter.slot(who.tenant_id):
        bulk = await who.facade.start_bulk_test(
            who.tenant_id,
            body.connector_type,
            body.status.value if body.status is not None else None,
            concurrency=body.concurrency,
            actor=who.actor,
            reach=who.reach,
        )
    return json_response(bulk.to_dict(), 202, {"Location": f"/api/v1/bulk-tests/{bulk.id}"})


@router.get(
    "/bulk-tests/{bulk_id}",
    operation_id="getBulkTest",
    response_model=BulkTestOut,
    responses=problems(404),
    summary="A bulk test's progress and summary",
)
async def get_bulk_test(bulk_id: PathId, who: Reader) -> Response:
    """Progress (`total`, `done`, `ok`, `failed`) and, once over, the summary: failures by
    error kind, the slowest tests, the first failures."""
    bulk = await who.facade.bulk_test(bulk_id, who.tenant_id, reach=who.reach)
    if bulk is None:
        raise NotFoundError("no bulk test with this id in your tenant")
    return json_response(bulk.to_dict())
