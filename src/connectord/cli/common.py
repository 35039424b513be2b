"""What several commands share: the tenant option, opening a backend, finding a connector."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from connectord.cli.app import state_of
from connectord.cli.backends import Backend, open_backend
from connectord.declarative import secret_patterns
from connectord.errors import NotFoundError, UnknownConnectorTypeError
from connectord.model import ConnectorInfo

TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        "-t",
        help="Tenant name or id [env var: CONNECTORD_TENANT]. Local store only (default: a tenant "
        "named 'default'); with --url the API key decides, except for key commands.",
    ),
]


@asynccontextmanager
async def backend(ctx: typer.Context, tenant: str | None, *, keyed: bool = True) -> AsyncIterator[Backend]:
    """The backend of this command (``keyed``: it works in the caller's own tenant)."""
    state = state_of(ctx)
    # The variable is read here, not by typer, so that a flag can be told from the environment.
    spec = tenant or os.environ.get("CONNECTORD_TENANT") or None
    async with open_backend(
        state.url,
        state.api_key() if state.remote else None,
        spec,
        tenant_given=tenant is not None,
        keyed=keyed,
    ) as found:
        yield found


def is_connector_id(ref: str) -> bool:
    """Whether ``ref`` is spelled as a connector id (a UUID) rather than a name."""
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


async def find_connector(api: Backend, ref: str) -> ConnectorInfo:
    """A connector by id or by name; :class:`NotFoundError` if neither matches."""
    if is_connector_id(ref):
        info = await api.get_connector(ref)
        if info is not None:
            return info
    async for item in api.list_connectors():
        if item.name == ref:
            return item
    raise NotFoundError(f"no connector named {ref!r} (or with that id); see: connectord connectors list")


async def type_secrets(api: Backend, connector_type: str) -> set[tuple[str, ...]]:
    """The secret field patterns of a type (from its published JSON Schema)."""
    types = await api.connector_types()
    for t in types:
        if t["name"] == connector_type:
            return secret_patterns(t.get("config_schema") or {})
    raise UnknownConnectorTypeError(connector_type, [t["name"] for t in types])
