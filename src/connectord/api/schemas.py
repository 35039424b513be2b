"""Request and response bodies of the REST API (pydantic), for validation and OpenAPI.

Responses are serialised from the core's dataclasses with orjson (see
``responses.py``); these models document exactly that shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectord.admin import MAX_REACH_IDS, MAX_SELECTOR_PAIRS
from connectord.definitions import MAX_CHECK_INTERVAL, MAX_FAILURE_THRESHOLD, MIN_CHECK_INTERVAL
from connectord.model import TENANT_SCOPES, BulkTestStatus, ConnectorStatus, Scope
from connectord.validation import portable_json

_STRICT = ConfigDict(extra="forbid")
#: A JSON object (``config``, ``metadata``) that can be stored and served back.
JsonObject = Annotated[dict[str, Any], AfterValidator(portable_json)]
#: A connector's own scheduling (docs/health.md); the facade checks the rest of the rule.
CheckInterval = Annotated[
    float | None,
    Field(
        strict=True,
        ge=0,
        le=MAX_CHECK_INTERVAL,
        description="Seconds between scheduled checks: 0 turns them off, else at least "
        f"{MIN_CHECK_INTERVAL:g}; null (in an update) puts back the server's default.",
    ),
]
FailureThreshold = Annotated[
    int | None,
    Field(
        strict=True,
        ge=1,
        le=MAX_FAILURE_THRESHOLD,
        description="Failed checks in a row that send connector.down; null (in an update) "
        "puts back the server's default.",
    ),
]


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
    check_interval: CheckInterval = None
    failure_threshold: FailureThreshold = None


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
    check_interval: CheckInterval = None
    failure_threshold: FailureThreshold = None


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
    check_interval: float | None = Field(description="Seconds between scheduled checks; null: the default.")
    failure_threshold: int | None = Field(
        description="Failed checks before connector.down; null: the default."
    )


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
    checkout_enabled: bool = Field(description="Whether keys with connectors:use may check credentials out.")


class TenantUpdate(BaseModel):
    """Body of ``PUT /tenants/{tenant_id}``: the settings given change."""

    model_config = _STRICT

    checkout_enabled: bool | None = Field(
        default=None,
        strict=True,
        description="false turns credential checkout (POST /connectors/{id}/credentials) off for "
        "the whole tenant; the proxy and the MCP gateway keep working.",
    )


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
    connector_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REACH_IDS,
        description="Narrow the key to these connectors of the tenant (docs/use.md).",
    )
    selector: dict[str, str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SELECTOR_PAIRS,
        description='Narrow the key to the connectors whose metadata holds each pair, e.g. {"team": '
        '"payments"}; with connector_ids too, a connector matching either is covered.',
    )


class KeyCreated(BaseModel):
    """A new API key (shown once)."""

    key_id: str
    tenant_id: str
    api_key: str
    scopes: list[str]
    connector_ids: list[str] | None = None
    selector: dict[str, str] | None = None


class KeyOut(BaseModel):
    """An API key's record (never the key)."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    connector_ids: list[str] | None = Field(description="The key's connectors; null: not narrowed by ids.")
    selector: dict[str, str] | None = Field(description="The key's selector; null: not narrowed by one.")


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


# --- health summary and bulk tests (docs/health.md) ---------------------------------------


class WindowChecks(BaseModel):
    """The checks of one window."""

    total: int
    ok: int


class LatencyOut(BaseModel):
    """Nearest-rank latency percentiles of the successful checks of a window."""

    window: str
    p50: int | None
    p95: int | None
    samples: int


class LastErrorOut(BaseModel):
    """The newest failed check."""

    error_kind: str | None
    error: str | None
    tested_at: datetime | None


class HealthOut(BaseModel):
    """A connector's health, computed from its kept history (docs/health.md)."""

    connector_id: str
    computed_at: datetime
    status: ConnectorStatus
    status_since: datetime | None
    consecutive_failures: int
    down_since: datetime | None
    last_check_at: datetime | None
    uptime: dict[str, float | None] = Field(
        description='Share of successful checks by window ("1h", "24h", "7d").'
    )
    checks: dict[str, WindowChecks]
    latency_ms: LatencyOut
    last_error: LastErrorOut | None


class BulkTestCreate(BaseModel):
    """Body of ``POST /connectors/bulk-test``: the list filters (all connectors without)."""

    model_config = _STRICT

    connector_type: str | None = Field(default=None, min_length=1, max_length=64)
    status: ConnectorStatus | None = None
    concurrency: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=1000,
        description="Tests at once; at most the server's test concurrency (also the default).",
    )


class BulkFilters(BaseModel):
    """The filters a bulk test was started with."""

    connector_type: str | None
    status: ConnectorStatus | None


class BulkItemOut(BaseModel):
    """One connector's result in a bulk test's summary."""

    connector_id: str
    name: str | None
    success: bool
    latency_ms: int | None
    error_kind: str | None
    error: str | None


class BulkSummaryOut(BaseModel):
    """What a finished bulk test found."""

    failed_by_kind: dict[str, int]
    slowest: list[BulkItemOut]
    failures: list[BulkItemOut]
    seconds: float


class BulkTestOut(BaseModel):
    """A bulk test: its progress and, once over, its summary."""

    id: str
    tenant_id: str
    status: BulkTestStatus
    filters: BulkFilters
    concurrency: int
    total: int
    done: int
    ok: int
    failed: int
    created_at: datetime
    finished_at: datetime | None
    summary: BulkSummaryOut | None
