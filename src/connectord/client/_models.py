"""The SDK's own result types (tenants and keys) and the parsing of answers into core types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectord.errors import ConnectordError
from connectord.model import AuditEvent, ConnectorInfo, TestResult
from connectord.store.base import TenantRecord


@dataclass(frozen=True, slots=True)
class NewTenant:
    """A tenant just created and its first API key (shown this once)."""

    tenant_id: str
    name: str
    key_id: str
    api_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewKey:
    """An API key just created (its value is shown this once)."""

    key_id: str
    tenant_id: str
    api_key: str = field(repr=False)
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as listed: never its value."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def connector_from_dict(data: Mapping[str, Any]) -> ConnectorInfo:
    """A :class:`ConnectorInfo` from its ``to_dict()`` form."""
    created = _dt(data.get("created_at"))
    if created is None:
        raise ConnectordError("the server sent a connector without created_at")
    return ConnectorInfo(
        id=data["id"],
        name=data["name"],
        connector_type=data["connector_type"],
        status=data["status"],
        capabilities=list(data.get("capabilities") or []),
        endpoint=data.get("endpoint"),
        tenant_id=data["tenant_id"],
        created_at=created,
        updated_at=_dt(data.get("updated_at")),
        last_used_at=_dt(data.get("last_used_at")),
        config=dict(data.get("config") or {}),
        metadata=dict(data.get("metadata") or {}),
        secret_fields=list(data.get("secret_fields") or []),
        version=int(data.get("version", 1)),
    )


def result_from_dict(data: Mapping[str, Any]) -> TestResult:
    """A :class:`TestResult` from its ``to_dict()`` form."""
    return TestResult(
        success=bool(data["success"]),
        connector_id=data.get("connector_id") or "",
        latency_ms=data.get("latency_ms"),
        error=data.get("error"),
        details=dict(data.get("details") or {}),
        tested_at=_dt(data.get("tested_at")),
    )


def audit_from_dict(data: Mapping[str, Any]) -> AuditEvent:
    """An :class:`AuditEvent` from its ``to_dict()`` form."""
    at = _dt(data.get("at"))
    if at is None:
        raise ConnectordError("the server sent an audit event without a time")
    return AuditEvent(
        id=data["id"],
        tenant_id=data["tenant_id"],
        actor=data["actor"],
        action=data["action"],
        connector_id=data.get("connector_id"),
        at=at,
        details=dict(data.get("details") or {}),
    )


def tenant_from_dict(data: Mapping[str, Any]) -> TenantRecord:
    created = _dt(data.get("created_at"))
    if created is None:
        raise ConnectordError("the server sent a tenant without created_at")
    return TenantRecord(data["id"], data["name"], created)


def api_key_from_dict(data: Mapping[str, Any]) -> ApiKey:
    created = _dt(data.get("created_at"))
    if created is None:
        raise ConnectordError("the server sent a key without created_at")
    return ApiKey(data["id"], data["name"], tuple(data["scopes"]), created, _dt(data.get("revoked_at")))
