"""``/webhooks`` (create, list, get, update, delete, deliveries) and ``/events`` (server-sent events).

Every webhook route needs ``connectors:write``, reads included: a webhook says
where a tenant's notifications go, and its delivery log what the receiver
answered, which is configuration, not connector data a reading key should list.
The event stream needs ``connectors:read`` (see ``docs/webhooks.md``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from connectord.api.deps import Cursor, PathId, Reader, TenantWriter
from connectord.api.docs import problems
from connectord.api.responses import json_response, page_response, parse_if_match
from connectord.errors import FieldError, NotFoundError, ValidationError
from connectord.facade import ConnectorsFacade
from connectord.model import DeliveryStatus, Event, EventType, Reach, WebhookInfo

router = APIRouter(tags=["webhooks"])
logger = logging.getLogger("connectord.api")

_MISSING = "no webhook with this id in your tenant"
_STRICT = ConfigDict(extra="forbid")
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
IfMatch = Annotated[str | None, Header(max_length=200, description='The ETag read before, e.g. "3".')]
EventTypes = Annotated[
    list[EventType] | None,
    Field(
        min_length=1,
        max_length=len(EventType),
        description="The event types it receives; every type when omitted.",
    ),
]
#: How often an open stream looks for new events, and how long it stays silent at most
#: (a comment line then keeps proxies from closing it and finds clients that left).
STREAM_POLL_SECONDS = 0.5
STREAM_HEARTBEAT_SECONDS = 15.0
_STREAM_BATCH = 100


class WebhookCreate(BaseModel):
    """Body of ``POST /webhooks``."""

    model_config = _STRICT

    url: str = Field(max_length=2048, description="An http:// or https:// URL, without credentials.")
    events: EventTypes = None
    description: str = Field(default="", max_length=500)
    enabled: bool = Field(default=True, strict=True)


class WebhookUpdate(BaseModel):
    """Body of ``PUT /webhooks/{id}``: only the fields given change."""

    model_config = _STRICT

    url: str | None = Field(default=None, max_length=2048)
    events: EventTypes = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, strict=True)


class WebhookOut(BaseModel):
    """A webhook. Its signing secret is never included after creation."""

    id: str
    tenant_id: str
    url: str
    events: list[EventType]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime | None
    version: int


class WebhookCreated(WebhookOut):
    """A new webhook and its signing secret, shown this once."""

    secret: str = Field(description="`whsec_<base64>`: verify each delivery's `webhook-signature` with it.")


class WebhookPage(BaseModel):
    """One page of webhooks."""

    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    """One event's delivery to a webhook."""

    id: str
    webhook_id: str
    event_id: str = Field(description="The `webhook-id` header of the delivery.")
    event_type: EventType
    connector_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None = Field(description="The HTTP status of the last attempt.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    """A webhook's deliveries, newest first."""

    items: list[DeliveryOut]
    next_cursor: str | None


def _webhook_response(info: WebhookInfo) -> Response:
    return json_response(info.to_dict(), headers={"ETag": f'"{info.version}"'})


def _events(values: list[EventType] | None) -> list[str] | None:
    return None if values is None else [str(v) for v in values]


@router.post(
    "/api/v1/webhooks",
    status_code=201,
    operation_id="createWebhook",
    response_model=WebhookCreated,
    responses=problems(413),
    summary="Create a webhook",
)
async def create_webhook(body: WebhookCreate, who: TenantWriter) -> Response:
    """Register a receiver for the tenant's events. The answer carries the signing secret,
    shown this once (the server keeps it encrypted and never returns it again)."""
    info, secret = await who.facade.create_webhook(
        who.tenant_id, body.url, _events(body.events), body.description, body.enabled, actor=who.actor
    )
    headers = {"Location": f"/api/v1/webhooks/{info.id}", "Cache-Control": "no-store"}
    return json_response({**info.to_dict(), "secret": secret}, 201, {"ETag": f'"{info.version}"', **headers})


@router.get(
    "/api/v1/webhooks",
    operation_id="listWebhooks",
    response_model=WebhookPage,
    responses=problems(),
    summary="List webhooks",
)
async def list_webhooks(who: TenantWriter, limit: Limit = 100, cursor: Cursor = None) -> Response:
    """The tenant's webhooks in creation order (follow `next_cursor`)."""
    return page_response(await who.facade.list_webhooks(who.tenant_id, limit, cursor))


@router.get(
    "/api/v1/webhooks/{webhook_id}",
    operation_id="getWebhook",
    response_model=WebhookOut,
    responses=problems(404),
    summary="Get a webhook",
)
async def get_webhook(webhook_id: PathId, who: TenantWriter) -> Response:
    """A webhook and its `ETag` (never its secret)."""
    info = await who.facade.get_webhook(webhook_id, who.tenant_id)
    if info is None:
        raise NotFoundError(_MISSING)
    return _webhook_response(info)


@router.put(
    "/api/v1/webhooks/{webhook_id}",
    operation_id="updateWebhook",
    response_model=WebhookOut,
    responses=problems(404, 412, 413),
    summary="Update a webhook",
)
async def update_webhook(
    webhook_id: PathId, body: WebhookUpdate, who: TenantWriter, if_match: IfMatch = None
) -> Response:
    """Change the fields given (`enabled: false` pauses deliveries; they resume when enabled)."""
    info = await who.facade.update_webhook(
        webhook_id,
        who.tenant_id,
        url=body.url,
        events=_events(body.events),
        description=body.description,
        enabled=body.enabled,
        expected_version=parse_if_match(if_match),
        actor=who.actor,
    )
    if info is None:
        raise NotFoundError(_MISSING)
    return _webhook_response(info)


@router.delete(
    "/api/v1/webhooks/{webhook_id}",
    status_code=204,
    operation_id="deleteWebhook",
    responses=problems(404),
    summary="Delete a webhook",
)
async def delete_webhook(webhook_id: PathId, who: TenantWriter) -> Response:
    """Delete a webhook and its delivery log; deliveries not yet sent are dropped."""
    if not await who.facade.delete_webhook(webhook_id, who.tenant_id, actor=who.actor):
        raise NotFoundError(_MISSING)
    return Response(status_code=204)


@router.get(
    "/api/v1/webhooks/{webhook_id}/deliveries",
    operation_id="listWebhookDeliveries",
    response_model=DeliveryPage,
    responses=problems(404),
    summary="A webhook's deliveries",
)
async def deliveries(
    webhook_id: PathId, who: TenantWriter, limit: Limit = 50, cursor: Cursor = None
) -> Response:
    """Each event sent (or to send) to this webhook, newest first: status, attempts, the last
    answer's HTTP status and error."""
    return page_response(await who.facade.webhook_deliveries(webhook_id, who.tenant_id, limit, cursor))


# --- the event stream ------------------------------------------------------------------------


def _frame(event: Event) -> bytes:
    """One server-sent event: ``id`` the event's seq, ``event`` its type, ``data`` the
    same JSON body a webhook receives (orjson writes it on one line)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.seq or 0,
        str(event.type).encode(),
        orjson.dumps(event.payload()),
    )


async def _stream(facade: ConnectorsFacade, tenant_id: str, after: int, reach: Reach) -> AsyncIterator[bytes]:
    # The reconnection delay a client should use, and a first write that sends the headers.
    yield b"retry: 2000\n\n"
    silent = 0.0
    try:
        while True:
            batch = await facade.events_after(tenant_id, after, _STREAM_BATCH)
            if batch:
                after = batch[-1].seq or after
            # A narrowed key sees its connectors' events only (docs/use.md).
            for event in await facade.covered_events(tenant_id, batch, reach):
                yield _frame(event)
            if batch:
                silent = 0.0
                if len(batch) == _STREAM_BATCH:
                    continue  # a backlog: send on without waiting
            await asyncio.sleep(STREAM_POLL_SECONDS)
            silent += STREAM_POLL_SECONDS
            if silent >= STREAM_HEARTBEAT_SECONDS:
                silent = 0.0
                yield b": keep-alive\n\n"
    except Exception as exc:  # noqa: BLE001 - end the stream; the client resumes with Last-Event-ID
        logger.warning("event stream ended: %s", type(exc).__name__, extra={"tenant_id": tenant_id})


def _start(last_event_id: str | None, after: int | None) -> int | None:
    """Where a stream resumes: ``Last-Event-ID`` (a reconnection), else ``after``."""
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise ValidationError(
                "invalid Last-Event-ID",
                [FieldError(("header", "Last-Event-ID"), "must be the id of an event this stream sent")],
            )
        return int(last_event_id)
    return after


@router.get(
    "/api/v1/events",
    operation_id="streamEvents",
    responses={
        **problems(),
        200: {
            "description": "Server-sent events: `id` (the event's seq), `event` (its type), `data` "
            "(the JSON body a webhook receives).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
    tags=["events"],
    summary="Stream events",
)
async def stream_events(
    who: Reader,
    last_event_id: Annotated[
        str | None, Header(max_length=20, description="Resume after this event (sent by EventSource).")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="Start after this event id (0: every event kept).")
    ] = None,
) -> Response:
    """The tenant's events as they happen (`connector.created`, `.updated`, `.deleted`,
    `.down`, `.recovered`). Without `Last-Event-ID` or `after`, the stream starts now."""
    start = _start(last_event_id, after)
    if start is None:
        # Read before answering: an event that happens while the stream opens is not missed.
        start = await who.facade.last_event_seq(who.tenant_id)
    headers: dict[str, Any] = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _stream(who.facade, who.tenant_id, start, who.reach), media_type="text/event-stream", headers=headers
    )
