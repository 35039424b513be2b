"""The public data model: connectors, test results and their enums."""

from __future__ import annotations

import enum
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ConnectorStatus(enum.StrEnum):
    """Where a connector is in its lifecycle (see ``docs/status-lifecycle.md``)."""

    REGISTERED = "registered"
    CONFIGURING = "configuring"
    READY = "ready"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    DEPRECATED = "deprecated"


class Capability(enum.StrEnum):
    """What a connector can be used for."""

    READ = "read"
    WRITE = "write"
    QUERY = "query"
    TRANSACTION = "transaction"
    VECTOR_SEARCH = "vector_search"
    STREAM = "stream"


class BuiltinType(enum.StrEnum):
    """The connector types connectord ships; plugins may add more names."""

    HTTP = "http"
    SQL = "sql"
    MCP = "mcp"
    VECTOR = "vector"
    FILE = "file"
    SERVERLESS = "serverless"
    STREAM = "stream"
    CUSTOM = "custom"


class ErrorKind(enum.StrEnum):
    """Stable codes for why a test failed (``TestResult.details["error_kind"]``)."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    AUTH = "auth"
    PROTOCOL = "protocol"
    EGRESS_DENIED = "egress_denied"
    INVALID_CONFIG = "invalid_config"
    NOT_FOUND = "not_found"
    UNEXPECTED_STATUS = "unexpected_status"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class Scope(enum.StrEnum):
    """What an API key may do (`docs/api.md`, "Authentication and scopes"). Stored and sent as the value."""

    READ = "connectors:read"
    WRITE = "connectors:write"
    TEST = "connectors:test"
    #: Using a connector through connectord (proxy, MCP gateway, checkout): no route
    #: asks for it yet, and no default key has it.
    USE = "connectors:use"
    #: Tenant and key management: an operator's key.
    ADMIN = "admin"


#: The scopes of a tenant's first key, and of a new key unless told otherwise.
TENANT_SCOPES: tuple[Scope, ...] = (Scope.READ, Scope.WRITE, Scope.TEST)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: str | datetime | None) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if value else None


@dataclass(slots=True)
class ConnectorInfo:
    """A registered connector as callers see it: never a secret value.

    ``secret_fields`` names the secrets that are set (``"password"``,
    ``"auth.client_secret"``); their values are write-only.
    """

    id: str
    name: str
    connector_type: str
    status: str
    capabilities: list[str]
    endpoint: str | None
    tenant_id: str
    created_at: datetime
    updated_at: datetime | None
    last_used_at: datetime | None
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    secret_fields: list[str] = field(default_factory=list)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; datetimes in ISO 8601 with their timezone."""
        return {
            "id": self.id,
            "name": self.name,
            "connector_type": self.connector_type,
            "status": str(self.status),
            "capabilities": list(self.capabilities),
            "endpoint": self.endpoint,
            "tenant_id": self.tenant_id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "last_used_at": _iso(self.last_used_at),
            "config": self.config,
            "metadata": self.metadata,
            "secret_fields": list(self.secret_fields),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectorInfo:
        """The inverse of :meth:`to_dict` (for the SDK and stored answers);
        ``KeyError``/``ValueError`` on a malformed dict."""
        created = _parse_dt(data["created_at"])
        if created is None:
            raise ValueError("created_at is required")
        return cls(
            id=data["id"],
            name=data["name"],
            connector_type=data["connector_type"],
            status=data["status"],
            capabilities=list(data.get("capabilities") or []),
            endpoint=data.get("endpoint"),
            tenant_id=data["tenant_id"],
            created_at=created,
            updated_at=_parse_dt(data.get("updated_at")),
            last_used_at=_parse_dt(data.get("last_used_at")),
            config=dict(data.get("config") or {}),
            metadata=dict(data.get("metadata") or {}),
            secret_fields=list(data.get("secret_fields") or []),
            version=int(data.get("version", 1)),
        )


@dataclass(slots=True)
class TestResult:
    """The outcome of one connector test.

    A failed connection is ``success=False`` with ``error`` (human text) and
    ``details["error_kind"]`` (an :class:`ErrorKind` value); ``details`` also
    holds what the probe learned and ``details["phases"]`` the time of each step.
    """

    __test__ = False  # not a pytest test class

    success: bool
    connector_id: str
    latency_ms: int | None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    tested_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "success": self.success,
            "connector_id": self.connector_id,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "details": self.details,
            "tested_at": _iso(self.tested_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        return cls(
            success=bool(data["success"]),
            connector_id=data.get("connector_id") or "",
            latency_ms=data.get("latency_ms"),
            error=data.get("error"),
            details=dict(data.get("details") or {}),
            tested_at=_parse_dt(data.get("tested_at")),
        )

    @property
    def error_kind(self) -> str | None:
        """The stable failure code, or ``None`` on success."""
        kind = self.details.get("error_kind")
        return str(kind) if kind is not None else None


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant."""

    id: str
    name: str
    created_at: datetime


@dataclass(slots=True, frozen=True)
class AuditEvent:
    """One audited change or test: who, what, which connector, when. Never a secret."""

    id: str
    tenant_id: str
    actor: str
    action: str
    connector_id: str | None
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "action": self.action,
            "connector_id": self.connector_id,
            "at": self.at.isoformat(),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        at = _parse_dt(data["at"])
        if at is None:
            raise ValueError("at is required")
        return cls(
            id=data["id"],
            tenant_id=data["tenant_id"],
            actor=data["actor"],
            action=data["action"],
            connector_id=data.get("connector_id"),
            at=at,
            details=dict(data.get("details") or {}),
        )


class EventType(enum.StrEnum):
    """What a webhook or the event stream tells a tenant (``docs/health.md``)."""

    CONNECTOR_CREATED = "connector.created"
    CONNECTOR_UPDATED = "connector.updated"
    CONNECTOR_DELETED = "connector.deleted"
    #: After ``failure_threshold`` consecutive failed checks (sent once per outage).
    CONNECTOR_DOWN = "connector.down"
    #: The first success after ``connector.down``.
    CONNECTOR_RECOVERED = "connector.recovered"


@dataclass(slots=True, frozen=True)
class Event:
    """One notification, shaped as the Standard Webhooks payload: ``type``,
    ``timestamp`` and ``data`` (never a secret). ``id`` is the ``webhook-id``;
    ``seq`` orders a tenant's events (set by the store)."""

    type: EventType
    tenant_id: str
    connector_id: str | None
    data: dict[str, Any]
    id: str = field(default_factory=lambda: "msg_" + new_id().replace("-", ""))
    at: datetime = field(default_factory=lambda: utcnow())
    seq: int | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON body a webhook receives (and an event-stream message carries)."""
        return {"type": str(self.type), "timestamp": self.at.isoformat(), "data": self.data}


@dataclass(slots=True, frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing; ``next_cursor`` is ``None`` at the end."""

    items: list[T]
    next_cursor: str | None


_last_id = 0


def new_id() -> str:
    """A UUIDv7 string, monotonic within the process, so keyset pages follow insertion order."""
    global _last_id
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & 0x3FFFFFFFFFFFFFFF
    if value <= _last_id:  # same millisecond: count up in the random bits
        value = _last_id + 1
    _last_id = value
    return str(uuid.UUID(int=value))


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
