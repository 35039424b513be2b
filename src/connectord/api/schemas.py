"""Request and response bodies of the REST API (pydantic), for validation and OpenAPI.

Responses are serialised from the core's dataclasses with orjson (see
``responses.py``); these models document exactly that shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectord.model import TENANT_SCOPES, ConnectorStatus, Scope
from connectord.validation import portable_json

_STRICT = ConfigDict(extra="forbid")
#: A JSON object (``config``, ``metadata``) that can be stored and served back.
JsonObject = Annotated[dict[str, Any], AfterValidator(portable_json)]


class ConnectorCreate(BaseModel):
    """Body of ``POST /connectors`` and ``POST /connectors/test``."""

    model_config = _STRICT

    name: str = Field(description="Unique within the tenant.", min_length=1, max_length=200)
    connector_type: str = Field(description="A type from GET /connector-types.", min_length=1, max_length=64)
    endpoint: str | None = Field(default=None, max_length=2048, description="URL or host:port.")
    config: JsonObject | None = Field(
        default=None, description="The type's config; secret fields are write-only."
    )
    metadata: JsonObject | None = Field(default=None, description="Free-form labels.")


class ConnectorUpdate(BaseModel):
    """Body of ``PUT /connectors/{id}``: only the fields given change."""

    model_config = _STRICT

    name: str | None = Field(default=None, min_length=1, max_length=200)
    endpoint: str | None = Field(default=None, max_length=2048, description='"" clears the endpoint.')
    config: JsonObject | None = Field(
        default=None,
        description="Replaces the config; secrets it omits are kept, secrets set to null are removed.",
    )
    metadata: JsonObject | None = None
    status: ConnectorStatus | None = Field(
        default=None, description="A user-settable status (see docs/status-lifecycle.md)."
    )


class ConnectorOut(BaseModel):
    """A connector. Secret values are never included; ``secret_fields`` names those set."""

    id: str
    name: str
    connector_type: str
    status: ConnectorStatus
    capabilities: list[str]
    endpoint: str | None
    tenant_id: str
    created_at: datetime
    updated_at: datetime | None
    last_used_at: datetime | None
    config: dict[str, Any]
    metadata: dict[str, Any]
    secret_fields: list[str]
    version: int


class ConnectorPage(BaseModel):
    """One page of connectors."""

    items: list[ConnectorOut]
    next_cursor: str | None


class TestResultOut(BaseModel):
    """The outcome of a test; a failed connection is ``success: false``."""

    __test__ = False

    success: bool
    connector_id: str
    latency_ms: int | None
    error: str | None
    details: dict[str, Any]
    tested_at: datetime | None


class TestResultPage(BaseModel):
    """Past test results, newest first."""

    __test__ = False

    items: list[TestResultOut]
    next_cursor: str | None


class AuditEventOut(BaseModel):
    """An audited change or test."""

    id: str
    tenant_id: str
    actor: str
    action: str
    connector_id: str | None
    at: datetime
    details: dict[str, Any]


class AuditPage(BaseModel):
    """Audit events, newest first."""

    items: list[AuditEventOut]
    next_cursor: str | None


class DriverOut(BaseModel):
    """A built-in provider of a type: is its driver installed, and what installs it."""

    provider: str
    installed: bool
    install: str


class ConnectorTypeOut(BaseModel):
    """A connector type and its config JSON Schema."""

    name: str
    description: str
    capabilities: list[str]
    config_schema: dict[str, Any]
    providers: list[str] | None = Field(default=None, description="The providers a `provider` field selects.")
    protocols: list[str] | None = Field(default=None, description="The protocols a `protocol` field selects.")
    drivers: list[DriverOut] = Field(default=[], description="Built-in providers and their drivers.")


class ConnectorTypeList(BaseModel):
    """Every connector type."""

    items: list[ConnectorTypeOut]


class Health(BaseModel):
    """Liveness."""

    status: str


class TenantCreate(BaseModel):
    """Body of ``POST /tenants``."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)


class TenantCreated(BaseModel):
    """A new tenant and its first API key (shown once)."""

    tenant_id: str
    name: str
    key_id: str
    api_key: str


class TenantOut(BaseModel):
    """A tenant."""

    id: str
    name: str
    created_at: datetime


class TenantList(BaseModel):
    """Every tenant."""

    items: list[TenantOut]


class KeyCreate(BaseModel):
    """Body of ``POST /tenants/{tenant_id}/keys``."""

    model_config = _STRICT

    name: str = Field(default="key", min_length=1, max_length=200)
    scopes: list[Scope] = Field(
        default_factory=lambda: list(TENANT_SCOPES), min_length=1, max_length=len(Scope)
    )


class KeyCreated(BaseModel):
    """A new API key (shown once)."""

    key_id: str
    tenant_id: str
    api_key: str
    scopes: list[str]


class KeyOut(BaseModel):
    """An API key's record (never the key)."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyList(BaseModel):
    """A tenant's keys."""

    items: list[KeyOut]


class FieldProblem(BaseModel):
    """One field-level problem."""

    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None
    retry_after: float | None = None
    current_version: int | None = None
    request_id: str | None = None
