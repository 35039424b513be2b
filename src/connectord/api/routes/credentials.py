"""``POST /connectors/{id}/credentials``: credential checkout (``docs/use.md``).

The one route that answers secret values: for the types connectord cannot stand in
front of (sql, stream, file, vector...), a workload with ``connectors:use`` takes the
endpoint and config with every secret revealed, and a DSN where the type has one. The
facade audits it (``connector.use``, the key and never a value) before anything is
answered; the answer is ``Cache-Control: no-store`` so no cache along the way keeps it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from connectord.api.deps import PathId, User
from connectord.api.docs import problems
from connectord.api.responses import json_response

router = APIRouter(prefix="/api/v1/connectors", tags=["use"])

#: No cache (a browser's, a proxy's) may keep the secrets of the answer.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class CheckoutOut(BaseModel):
    """A connector's credentials, secrets revealed (the answer of a checkout)."""

    connector_id: str
    connector_type: str
    endpoint: str | None
    config: dict[str, Any] = Field(description="The config with every secret and secret reference revealed.")
    dsn: str | None = Field(
        description="The one string a driver takes, credentials included (sql and stream types); "
        "null for the other types."
    )


@router.post(
    "/{connector_id}/credentials",
    operation_id="checkoutCredentials",
    response_model=CheckoutOut,
    responses=problems(404, 409, 413),
    summary="Check a connector's credentials out",
)
async def checkout(connector_id: PathId, who: User) -> Response:
    """The connector's endpoint and config with its secrets revealed, and a DSN where the type
    has one. Needs `connectors:use`; audited as `connector.use`; answered `Cache-Control:
    no-store`. `http` and `mcp` connectors are refused (409 `not-checked-out`): use the proxy
    and the MCP gateway, which never let a secret out. A tenant may turn checkout off (403
    `checkout-disabled`)."""
    found = await who.facade.checkout(connector_id, who.tenant_id, reach=who.reach, actor=who.actor)
    return json_response(found.to_dict(), headers=NO_STORE)
