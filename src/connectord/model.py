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
    #: The test was cut before it finished (a shutdown past its drain bound): it says
    #: nothing of the connector, so its status and failure count are left as they were.
    CANCELLED = "cancelled"


class Scope(enum.StrEnum):
    """What an API key may do (`docs/api.md`, "Authentication and scopes"). Stored and sent as the value."""

    READ = "connectors:read"
    WRITE = "connectors:write"
    TEST = "connectors:test"
    #: Using a connector through connectord: the proxy, the MCP gateway and credential
    #: checkout ask for it (docs/use.md). No default key has it: it is given on purpose.
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


# Not slots=True: orjson writes a dataclass from its __dict__ several times faster than
# one with slots, attribute by attribute (a list page of 100: 43 us against 200 us).
@dataclass
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
    #: Seconds between scheduled checks: ``None`` is the server's default, ``0`` turns them off.
    check_interval: float | None = None
    #: Failed checks in a row that make ``connector.down``: ``None`` is the server's default.
    failure_threshold: int | None = None

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
            "check_interval": self.check_interval,
            "failure_threshold": self.failure_threshold,
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
            check_interval=_float_or_none(data.get("check_interval")),
            failure_threshold=_int_or_none(data.get("failure_threshold")),
        )


@dataclass(frozen=True, slots=True)
class Reach:
    """Which of a tenant's connectors an API key covers (``docs/use.md``).

    ``Reach()`` (both ``None``) covers every connector of the tenant: what every key
    made before narrowed keys existed still means. ``connector_ids`` covers those ids;
    ``selector`` covers the connectors whose metadata holds each of its ``key=value``
    pairs as a string value. Given both, a connector is covered when it matches either
    (their union): a key made for "the payments team's connectors and this one more".
    """

    connector_ids: frozenset[str] | None = None
    #: ``(key, value)`` pairs, sorted by key; every pair must match.
    selector: tuple[tuple[str, str], ...] | None = None

    @property
    def narrowed(self) -> bool:
        """Whether the key covers less than the whole tenant."""
        return self.connector_ids is not None or self.selector is not None

    def covers(self, info: ConnectorInfo) -> bool:
        """Whether ``info`` is one of the connectors this reach covers."""
        return self.matches(info.id, info.metadata)

    def matches(self, connector_id: str, metadata: Mapping[str, Any]) -> bool:
        """Whether a connector of this id and metadata is covered (an event's snapshot)."""
        if not self.narrowed:
            return True
        if self.connector_ids is not None and connector_id in self.connector_ids:
            return True
        if self.selector is not None:
            return all(isinstance(metadata.get(k), str) and metadata[k] == v for k, v in self.selector)
        return False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``connector_ids`` sorted and ``selector`` as an object, each
        ``None`` when the reach is not narrowed by it."""
        return {
            "connector_ids": sorted(self.connector_ids) if self.connector_ids is not None else None,
            "selector": dict(self.selector) if self.selector is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Reach:
        """The inverse of :meth:`to_dict`; ``None`` or both ``None``: the whole tenant."""
        ids = (data or {}).get("connector_ids")
        selector = (data or {}).get("selector")
        return cls(
            frozenset(str(i) for i in ids) if ids is not None else None,
            tuple(sorted((str(k), str(v)) for k, v in selector.items())) if selector is not None else None,
        )


#: The reach of a key that is not narrowed: every connector of its tenant.
WHOLE_TENANT = Reach()


@dataclass(frozen=True, slots=True)
class InUse:
    """A connector opened for use (the proxy, the MCP gateway, a checkout): the connector
    and its endpoint and config with every secret revealed and every secret reference
    (``env:``, ``file:``, ``aws-sm:``) resolved. Its repr never shows the config."""

    info: ConnectorInfo
    endpoint: str | None = field(repr=False)
    config: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Checkout:
    """A connector's credentials checked out (``POST /connectors/{id}/credentials``,
    ``docs/use.md``): its endpoint, its config with every secret revealed, and a DSN
    where its type has one. The repr shows neither config nor DSN."""

    connector_id: str
    connector_type: str
    endpoint: str | None
    config: dict[str, Any] = field(repr=False)
    dsn: str | None = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the checkout route."""
        return {
            "connector_id": self.connector_id,
            "connector_type": self.connector_type,
            "endpoint": self.endpoint,
            "config": self.config,
            "dsn": self.dsn,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkout:
        """The inverse of :meth:`to_dict` (the SDK's)."""
        dsn = data.get("dsn")
        endpoint = data.get("endpoint")
        return cls(
            str(data["connector_id"]),
            str(data["connector_type"]),
            str(endpoint) if endpoint is not None else None,
            dict(data.get("config") or {}),
            str(dsn) if dsn is not None else None,
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
    #: Whether keys with ``connectors:use`` may check credentials out (``docs/use.md``).
    checkout_enabled: bool = True


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


# --- webhooks (docs/webhooks.md) -----------------------------------------------------------


@dataclass(slots=True, frozen=True)
class WebhookInfo:
    """A tenant's webhook as callers see it: never its signing secret (shown once, at creation)."""

    id: str
    tenant_id: str
    url: str
    #: The event types it receives (:class:`EventType` values).
    events: list[str]
    description: str
    #: A disabled webhook receives nothing; deliveries already queued wait until it is enabled.
    enabled: bool
    created_at: datetime
    updated_at: datetime | None
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "enabled": self.enabled,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookInfo:
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        created = _parse_dt(data["created_at"])
        if created is None:
            raise ValueError("created_at is required")
        return cls(
            id=data["id"],
            tenant_id=data["tenant_id"],
            url=data["url"],
            events=list(data["events"]),
            description=data.get("description") or "",
            enabled=bool(data["enabled"]),
            created_at=created,
            updated_at=_parse_dt(data.get("updated_at")),
            version=int(data.get("version", 1)),
        )


class DeliveryStatus(enum.StrEnum):
    """Where one webhook delivery is: waiting (or between retries), done, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(slots=True, frozen=True)
class DeliveryInfo:
    """One event's delivery to one webhook: its attempts and their last outcome."""

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    connector_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    #: The HTTP status of the last attempt (``None`` when no answer came).
    last_status: int | None
    #: Why the last attempt failed (connectord's own words, never a secret).
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "connector_id": self.connector_id,
            "status": str(self.status),
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "delivered_at": _iso(self.delivered_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryInfo:
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        created = _parse_dt(data["created_at"])
        if created is None:
            raise ValueError("created_at is required")
        return cls(
            id=data["id"],
            webhook_id=data["webhook_id"],
            event_id=data["event_id"],
            event_type=data["event_type"],
            connector_id=data.get("connector_id"),
            status=data["status"],
            attempts=int(data["attempts"]),
            next_attempt_at=_parse_dt(data.get("next_attempt_at")),
            last_status=data.get("last_status"),
            last_error=data.get("last_error"),
            created_at=created,
            delivered_at=_parse_dt(data.get("delivered_at")),
        )


# --- per-connector checks, the health summary, bulk tests (docs/health.md) -----------------


def _float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "unset"


#: An argument left out, where ``None`` is a value of its own (``check_interval=None``
#: puts a connector back on the server's default; leaving it out changes nothing).
UNSET = Unset.UNSET

#: The windows of the health summary: name and length in seconds.
HEALTH_WINDOWS: tuple[tuple[str, int], ...] = (("1h", 3600), ("24h", 86400), ("7d", 7 * 86400))
#: The window the latency percentiles cover.
LATENCY_WINDOW = "24h"


@dataclass(frozen=True, slots=True)
class HealthWindow:
    """The checks of one window: how many ran and how many succeeded."""

    checks: int
    ok: int

    @property
    def uptime(self) -> float | None:
        """The share of successful checks, ``None`` when none ran."""
        return self.ok / self.checks if self.checks else None


@dataclass(frozen=True, slots=True)
class LastError:
    """The newest failed check: its error kind, message and time."""

    error_kind: str | None
    error: str | None
    tested_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"error_kind": self.error_kind, "error": self.error, "tested_at": _iso(self.tested_at)}


@dataclass(frozen=True, slots=True)
class HealthSummary:
    """A connector's health, computed from its kept test history (``docs/health.md``
    defines every figure). Never a secret: errors are the stored, redacted ones."""

    connector_id: str
    computed_at: datetime
    status: str
    #: When the current status began, as far as the history tells (``docs/health.md``).
    status_since: datetime | None
    consecutive_failures: int
    #: When ``connector.down`` was sent for the current outage; ``None`` when not down.
    down_since: datetime | None
    last_check_at: datetime | None
    #: By window name (:data:`HEALTH_WINDOWS`).
    windows: dict[str, HealthWindow]
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    #: Successful checks with a latency in :data:`LATENCY_WINDOW` (the percentiles' sample).
    latency_samples: int
    last_error: LastError | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "connector_id": self.connector_id,
            "computed_at": _iso(self.computed_at),
            "status": str(self.status),
            "status_since": _iso(self.status_since),
            "consecutive_failures": self.consecutive_failures,
            "down_since": _iso(self.down_since),
            "last_check_at": _iso(self.last_check_at),
            "uptime": {name: w.uptime for name, w in self.windows.items()},
            "checks": {name: {"total": w.checks, "ok": w.ok} for name, w in self.windows.items()},
            "latency_ms": {
                "window": LATENCY_WINDOW,
                "p50": self.latency_p50_ms,
                "p95": self.latency_p95_ms,
                "samples": self.latency_samples,
            },
            "last_error": self.last_error.to_dict() if self.last_error is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthSummary:
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        computed = _parse_dt(data["computed_at"])
        if computed is None:
            raise ValueError("computed_at is required")
        checks: Mapping[str, Any] = data["checks"]
        latency: Mapping[str, Any] = data["latency_ms"]
        error = data.get("last_error")
        return cls(
            connector_id=data["connector_id"],
            computed_at=computed,
            status=data["status"],
            status_since=_parse_dt(data.get("status_since")),
            consecutive_failures=int(data["consecutive_failures"]),
            down_since=_parse_dt(data.get("down_since")),
            last_check_at=_parse_dt(data.get("last_check_at")),
            windows={name: HealthWindow(int(c["total"]), int(c["ok"])) for name, c in checks.items()},
            latency_p50_ms=_int_or_none(latency.get("p50")),
            latency_p95_ms=_int_or_none(latency.get("p95")),
            latency_samples=int(latency.get("samples") or 0),
            last_error=(
                LastError(error.get("error_kind"), error.get("error"), _parse_dt(error.get("tested_at")))
                if error
                else None
            ),
        )


class BulkTestStatus(enum.StrEnum):
    """Where a bulk test is."""

    RUNNING = "running"
    DONE = "done"
    #: Stopped before the end: its server shut down (or died) while it ran.
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One connector's result in a bulk test's summary (the slowest, the failures)."""

    connector_id: str
    name: str | None
    success: bool
    latency_ms: int | None
    error_kind: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "connector_id": self.connector_id,
            "name": self.name,
            "success": self.success,
            "latency_ms": self.latency_ms,
            "error_kind": self.error_kind,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BulkItem:
        """The inverse of :meth:`to_dict`."""
        return cls(
            connector_id=data["connector_id"],
            name=data.get("name"),
            success=bool(data["success"]),
            latency_ms=_int_or_none(data.get("latency_ms")),
            error_kind=data.get("error_kind"),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class BulkSummary:
    """What a finished bulk test found, beyond its counts."""

    failed_by_kind: dict[str, int]
    #: The slowest tests, slowest first.
    slowest: list[BulkItem]
    #: The first failures (at most a few dozen; each connector's history has them all).
    failures: list[BulkItem]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "failed_by_kind": dict(self.failed_by_kind),
            "slowest": [i.to_dict() for i in self.slowest],
            "failures": [i.to_dict() for i in self.failures],
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BulkSummary:
        """The inverse of :meth:`to_dict`."""
        return cls(
            failed_by_kind={str(k): int(v) for k, v in (data.get("failed_by_kind") or {}).items()},
            slowest=[BulkItem.from_dict(i) for i in data.get("slowest") or ()],
            failures=[BulkItem.from_dict(i) for i in data.get("failures") or ()],
            seconds=float(data.get("seconds") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class BulkTest:
    """A bulk test the server runs: its filters, its progress and, once over, its summary."""

    id: str
    tenant_id: str
    status: str
    connector_type: str | None
    status_filter: str | None
    concurrency: int
    #: Matching connectors when it started (deprecated ones excluded).
    total: int
    done: int
    ok: int
    created_at: datetime
    finished_at: datetime | None = None
    #: ``None`` while it runs.
    summary: BulkSummary | None = None

    @property
    def failed(self) -> int:
        """Tests done that failed."""
        return self.done - self.ok

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "status": str(self.status),
            "filters": {"connector_type": self.connector_type, "status": self.status_filter},
            "concurrency": self.concurrency,
            "total": self.total,
            "done": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
            "summary": self.summary.to_dict() if self.summary is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BulkTest:
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        created = _parse_dt(data["created_at"])
        if created is None:
            raise ValueError("created_at is required")
        filters: Mapping[str, Any] = data.get("filters") or {}
        summary = data.get("summary")
        return cls(
            id=data["id"],
            tenant_id=data["tenant_id"],
            status=data["status"],
            connector_type=filters.get("connector_type"),
            status_filter=filters.get("status"),
            concurrency=int(data["concurrency"]),
            total=int(data["total"]),
            done=int(data["done"]),
            ok=int(data["ok"]),
            created_at=created,
            finished_at=_parse_dt(data.get("finished_at")),
            summary=BulkSummary.from_dict(summary) if summary else None,
        )


# --- the web console's list rows (docs/console.md) ------------------------------------------


@dataclass(frozen=True, slots=True)
class RecentTests:
    """A connector's tests in brief, for one row of a list: checks and successes over the
    last 24 hours and the time of its newest test (any age)."""

    connector_id: str
    checks_24h: int
    ok_24h: int
    last_tested_at: datetime | None

    @property
    def uptime_24h(self) -> float | None:
        """The share of the last 24 hours' checks that succeeded, ``None`` when none ran."""
        return self.ok_24h / self.checks_24h if self.checks_24h else None


@dataclass(frozen=True, slots=True)
class SecretState:
    """What may be told of one stored secret without its value (``docs/secrets.md``):
    its fingerprint (a keyed hash) and, when the secret is a reference (``env:NAME``,
    ``file:PATH``, ``aws-sm:ID``), the reference itself, which names where the value
    lives and is not secret."""

    fingerprint: str
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"fingerprint": self.fingerprint, "reference": self.reference}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SecretState:
        """The inverse of :meth:`to_dict`."""
        ref = data.get("reference")
        return cls(str(data["fingerprint"]), str(ref) if ref is not None else None)
