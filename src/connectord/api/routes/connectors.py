"""``/connectors``: list, register, get, update, delete, test, history.

Every route over stored connectors passes the key's reach on (``docs/use.md``): a
narrowed key lists only the connectors it covers, and any other id answers 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from starlette.responses import Response

from connectord.api.deps import NO_NUL, Cursor, PathId, Reader, Tester, Writer
from connectord.api.docs import problems
from connectord.api.responses import connector_response, json_response, page_response, parse_if_match
from connectord.api.routing import LeanRoute
from connectord.api.schemas import (
    ConnectorCreate,
    ConnectorOut,
    ConnectorPage,
    ConnectorUpdate,
    TestResultOut,
    TestResultPage,
)
from connectord.errors import NotFoundError
from connectord.model import UNSET, ConnectorStatus

#: LeanRoute: the routes over one connector skip FastAPI's dependency solving (api/routing.py).
router = APIRouter(prefix="/api/v1/connectors", tags=["connectors"], route_class=LeanRoute)

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
IfMatch = Annotated[str | None, Header(max_length=200, description='The ETag read before, e.g. "3".')]
_MISSING = "no connector with this id in your tenant"


@router.get(
    "",
    operation_id="listConnectors",
    response_model=ConnectorPage,
    responses=problems(),
    summary="List connectors",
)
async def list_connectors(
    who: Reader,
    connector_type: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    status: ConnectorStatus | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Seed-compatible offset paging.")] = 0,
) -> Response:
    """The tenant's connectors in creation order, keyset-paginated (follow `next_cursor`)."""
    page = await who.facade.list_connectors_page(
        who.tenant_id, connector_type, status, limit, cursor, offset, reach=who.reach
    )
    return page_response(page)


@router.post(
    "",
    status_code=201,
    operation_id="registerConnector",
    response_model=ConnectorOut,
    responses=problems(409, 413),
    summary="Register a connector",
)
async def register_connector(
    body: ConnectorCreate,
    who: Writer,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="Retries with the same key return the first result.")
    ] = None,
) -> Response:
    """Validate and store a connector; secrets in `config` are encrypted and never returned."""
    info = await who.facade.register_connector(
        who.tenant_id,
        body.name,
        body.connector_type,
        body.endpoint,
        body.config,
        body.metadata,
        actor=who.actor,
        idempotency_key=idempotency_key,
        check_interval=body.check_interval,
        failure_threshold=body.failure_threshold,
        reach=who.reach,
    )
    return connector_response(info, 201, {"Location": f"/api/v1/connectors/{info.id}"})


@router.post(
    "/test",
    operation_id="testDefinition",
    response_model=TestResultOut,
    responses=problems(413, 429),
    summary="Test an unsaved connector",
)
async def test_definition(body: ConnectorCreate, who: Tester) -> Response:
    """Test a definition without storing it (same body as registering)."""
    async with who.limiter.slot(who.tenant_id):
        result = await who.facade.test_definition(
            who.tenant_id,
            body.name,
            body.connector_type,
            body.endpoint,
            body.config,
            body.metadata,
            actor=who.actor,
        )
    return json_response(result.to_dict())


@router.get(
    "/{connector_id}",
    operation_id="getConnector",
    response_model=ConnectorOut,
    responses=problems(404),
    summary="Get a connector",
)
async def get_connector(connector_id: PathId, who: Reader) -> Response:
    """A connector and its `ETag`."""
    info = await who.facade.get_connector(connector_id, who.tenant_id, reach=who.reach)
    if info is None:
        raise NotFoundError(_MISSING)
    return connector_response(info)


@router.put(
    "/{connector_id}",
    operation_id="updateConnector",
    response_model=ConnectorOut,
    responses=problems(404, 409, 412, 413),
    summary="Update a connector",
)
async def update_connector(
    connector_id: PathId, body: ConnectorUpdate, who: Writer, if_match: IfMatch = None
) -> Response:
    """Change the fields given. `endpoint: null` or `""` clears the endpoint."""
    given = body.model_fields_set
    endpoint = body.endpoint if body.endpoint is not None else ("" if "endpoint" in given else None)
    info = await who.facade.update_connector(
        connector_id,
        who.tenant_id,
        name=body.name,
        endpoint=endpoint,
        config=body.config,
        metadata=body.metadata,
        status=body.status,
        expected_version=parse_if_match(if_match),
        actor=who.actor,
        # Given as null, they go back to the server's default; left out, they stay.
        check_interval=body.check_interval if "check_interval" in given else UNSET,
        failure_threshold=body.failure_threshold if "failure_threshold" in given else UNSET,
        reach=who.reach,
    )
    if info is None:
        raise NotFoundError(_MISSING)
    return connector_response(info)


@router.delete(
    "/{connector_id}",
    status_code=204,
    operation_id="deleteConnector",
    responses=problems(404, 412),
    summary="Delete a connector",
)
async def delete_connector(connector_id: PathId, who: Writer, if_match: IfMatch = None) -> Response:
    """Delete a connector with its secrets and test history."""
    deleted = await who.facade.delete_connector(
        connector_id,
        who.tenant_id,
        expected_version=parse_if_match(if_match),
        actor=who.actor,
        reach=who.reach,
    )
    if not deleted:
        raise NotFoundError(_MISSING)
    return Response(status_code=204)


@router.post(
    "/{connector_id}/test",
    operation_id="testConnector",
    response_model=TestResultOut,
    responses=problems(404, 409, 413, 429),
    summary="Test a connector now",
)
async def test_connector(connector_id: PathId, who: Tester) -> Response:
    """Really connect. A failed connection is `success: false` with `details.error_kind`."""
    async with who.limiter.slot(who.tenant_id):
        result = await who.facade.test_connector(
            connector_id, who.tenant_id, actor=who.actor, reach=who.reach
        )
    return json_response(result.to_dict())


@router.get(
    "/{connector_id}/history",
    operation_id="connectorHistory",
    response_model=TestResultPage,
    responses=problems(404),
    summary="Past test results",
)
async def history(connector_id: PathId, who: Reader, limit: Limit = 50, cursor: Cursor = None) -> Response:
    """Past test results of a connector, newest first."""
    return page_response(
        await who.facade.history(connector_id, who.tenant_id, limit, cursor, reach=who.reach)
    )
