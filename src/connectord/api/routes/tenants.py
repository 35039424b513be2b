"""``/tenants``: tenant and key management (the ``admin`` scope)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from connectord.api.deps import Operator, PathId
from connectord.api.docs import problems
from connectord.api.responses import json_response
from connectord.api.schemas import (
    KeyCreate,
    KeyCreated,
    KeyList,
    TenantCreate,
    TenantCreated,
    TenantList,
    TenantOut,
    TenantUpdate,
)
from connectord.errors import NotFoundError
from connectord.model import TenantRecord

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"])


@router.post(
    "",
    status_code=201,
    operation_id="createTenant",
    response_model=TenantCreated,
    responses=problems(409, 413),
    summary="Create a tenant",
)
async def create_tenant(body: TenantCreate, who: Operator) -> Response:
    """A new tenant and its first API key; the key is shown only here."""
    tenant, key = await who.admin.create_tenant(body.name, actor=who.actor)
    return json_response(
        {"tenant_id": tenant.id, "name": tenant.name, "key_id": key.key_id, "api_key": key.api_key}, 201
    )


@router.get(
    "", operation_id="listTenants", response_model=TenantList, responses=problems(), summary="List tenants"
)
async def list_tenants(who: Operator) -> Response:
    """Every tenant."""
    tenants = await who.admin.list_tenants()
    return json_response({"items": [_tenant(t) for t in tenants]})


@router.put(
    "/{tenant_id}",
    operation_id="updateTenant",
    response_model=TenantOut,
    responses=problems(404, 413),
    summary="Change a tenant's settings",
)
async def update_tenant(tenant_id: PathId, body: TenantUpdate, who: Operator) -> Response:
    """Change the settings given: `checkout_enabled: false` turns credential checkout off."""
    tenant = await who.admin.get_tenant(tenant_id)
    if tenant is None:
        raise NotFoundError("no such tenant")
    if body.checkout_enabled is not None:
        tenant = await who.admin.set_checkout(tenant_id, body.checkout_enabled, actor=who.actor)
    return json_response(_tenant(tenant))


def _tenant(tenant: TenantRecord) -> dict[str, object]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "created_at": tenant.created_at.isoformat(),
        "checkout_enabled": tenant.checkout_enabled,
    }


@router.post(
    "/{tenant_id}/keys",
    status_code=201,
    operation_id="createKey",
    response_model=KeyCreated,
    responses=problems(404, 413),
    summary="Create an API key",
)
async def create_key(tenant_id: PathId, body: KeyCreate, who: Operator) -> Response:
    """A new key for a tenant; the key is shown only here. `connector_ids` and `selector`
    narrow it to some connectors (docs/use.md)."""
    key = await who.admin.create_key(
        tenant_id,
        name=body.name,
        scopes=tuple(body.scopes),
        actor=who.actor,
        connector_ids=body.connector_ids,
        selector=body.selector,
    )
    return json_response(
        {
            "key_id": key.key_id,
            "tenant_id": key.tenant_id,
            "api_key": key.api_key,
            "scopes": list(key.scopes),
            **key.reach.to_dict(),
        },
        201,
    )


@router.get(
    "/{tenant_id}/keys",
    operation_id="listKeys",
    response_model=KeyList,
    responses=problems(404),
    summary="List keys",
)
async def list_keys(tenant_id: PathId, who: Operator) -> Response:
    """A tenant's keys (never their values)."""
    if await who.admin.get_tenant(tenant_id) is None:
        raise NotFoundError("no such tenant")
    keys = await who.admin.list_keys(tenant_id)
    return json_response(
        {
            "items": [
                {
                    "id": k.id,
                    "name": k.name,
                    "scopes": list(k.scopes),
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    **k.reach.to_dict(),
                }
                for k in keys
            ]
        }
    )


@router.delete(
    "/{tenant_id}/keys/{key_id}",
    status_code=204,
    operation_id="revokeKey",
    responses=problems(404),
    summary="Revoke an API key",
)
async def revoke_key(tenant_id: PathId, key_id: PathId, who: Operator) -> Response:
    """Revoke a key; requests with it get 401 from now on."""
    if not await who.admin.revoke_key(tenant_id, key_id, actor=who.actor):
        raise NotFoundError("no such active key in this tenant")
    return Response(status_code=204)
