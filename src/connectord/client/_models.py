"""The SDK's own result types (tenants and keys) and the parsing of answers into core types."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from connectord.errors import ConnectordError
from connectord.model import (
    WHOLE_TENANT,
    AuditEvent,
    BulkTest,
    Checkout,
    ConnectorInfo,
    DeliveryInfo,
    HealthSummary,
    Reach,
    SecretState,
    TenantRecord,
    TestResult,
    WebhookInfo,
)

T = TypeVar("T")


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
    #: The connectors the key covers (``docs/use.md``); the whole tenant unless narrowed.
    reach: Reach = WHOLE_TENANT


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as listed: never its value."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    reach: Reach = WHOLE_TENANT


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _parsed(parse: Callable[[Mapping[str, Any]], T], data: Mapping[str, Any], what: str) -> T:
    try:
        return parse(data)
    except (KeyError, ValueError, TypeError):
        raise ConnectordError(f"the server sent a malformed {what}") from None


def connector_from_dict(data: Mapping[str, Any]) -> ConnectorInfo:
    """A :class:`ConnectorInfo` from its ``to_dict()`` form."""
    return _parsed(ConnectorInfo.from_dict, data, "connector")


def result_from_dict(data: Mapping[str, Any]) -> TestResult:
    """A :class:`TestResult` from its ``to_dict()`` form."""
    return _parsed(TestResult.from_dict, data, "test result")


def audit_from_dict(data: Mapping[str, Any]) -> AuditEvent:
    """An :class:`AuditEvent` from its ``to_dict()`` form."""
    return _parsed(AuditEvent.from_dict, data, "audit event")


def tenant_from_dict(data: Mapping[str, Any]) -> TenantRecord:
    created = _dt(data.get("created_at"))
    if created is None:
        raise ConnectordError("the server sent a tenant without created_at")
    return TenantRecord(data["id"], data["name"], created, bool(data.get("checkout_enabled", True)))


def api_key_from_dict(data: Mapping[str, Any]) -> ApiKey:
    created = _dt(data.get("created_at"))
    if created is None:
        raise ConnectordError("the server sent a key without created_at")
    return ApiKey(
        data["id"],
        data["name"],
        tuple(data["scopes"]),
        created,
        _dt(data.get("revoked_at")),
        _parsed(Reach.from_dict, data, "key reach"),
    )


def checkout_from_dict(data: Mapping[str, Any]) -> Checkout:
    """A :class:`Checkout` from the answer of ``POST /connectors/{id}/credentials``."""
    return _parsed(Checkout.from_dict, data, "checkout")


def secret_states_from_dict(data: Mapping[str, Any]) -> dict[str, SecretState]:
    """``{field: SecretState}`` from the answer of ``GET /connectors/{id}/secrets``."""
    states = data.get("secrets")
    if not isinstance(states, Mapping):
        raise ConnectordError("the server sent secrets without a secrets object")
    return {str(k): _parsed(SecretState.from_dict, v, "secret state") for k, v in states.items()}


def health_from_dict(data: Mapping[str, Any]) -> HealthSummary:
    """A :class:`HealthSummary` from its ``to_dict()`` form."""
    return _parsed(HealthSummary.from_dict, data, "health summary")


def bulk_test_from_dict(data: Mapping[str, Any]) -> BulkTest:
    """A :class:`BulkTest` from its ``to_dict()`` form."""
    return _parsed(BulkTest.from_dict, data, "bulk test")


# --- webhooks ---


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """A webhook just created and its signing secret (``whsec_...``, shown this once)."""

    webhook: WebhookInfo
    secret: str = field(repr=False)


def webhook_from_dict(data: Mapping[str, Any]) -> WebhookInfo:
    """A :class:`WebhookInfo` from its ``to_dict()`` form."""
    return _parsed(WebhookInfo.from_dict, data, "webhook")


def delivery_from_dict(data: Mapping[str, Any]) -> DeliveryInfo:
    """A :class:`DeliveryInfo` from its ``to_dict()`` form."""
    return _parsed(DeliveryInfo.from_dict, data, "webhook delivery")
