"""The store interface. Every method that touches a tenant's data takes ``tenant_id``.

The one exception is :meth:`Store.find_api_key`: authentication is what tells
us the tenant, so it looks a key up by its hash alone. The admin-wide methods
(``list_tenants``, ``secret_key_usage``) serve operators' commands.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectord.model import AuditEvent, ConnectorInfo, TenantRecord, TestResult
from connectord.secrets import Ciphertext


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: its hash, never the key."""

    id: str
    tenant_id: str
    name: str
    key_hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first answer to a create sent with an ``Idempotency-Key``."""

    key: str
    request_hash: str
    response: str
    created_at: datetime


class Keep:
    """Marker: leave the stored secret as it is."""


KEEP = Keep()


class Store(abc.ABC):
    """Persistence of tenants, keys, connectors, secrets, test history and audit events.

    Writes that change a connector take the audit event that records them and
    store both in one transaction: a change is never without its audit record.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Open connections and apply migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    # tenants and keys
    @abc.abstractmethod
    async def create_tenant(self, tenant: TenantRecord, audit: AuditEvent) -> None:
        """Add a tenant; :class:`DuplicateNameError` if the name is taken."""

    @abc.abstractmethod
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        """A tenant by id."""

    @abc.abstractmethod
    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant (operators only)."""

    @abc.abstractmethod
    async def create_api_key(self, tenant_id: str, key: ApiKeyRecord, audit: AuditEvent) -> None:
        """Add a key to a tenant."""

    @abc.abstractmethod
    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The unrevoked key with this hash."""

    @abc.abstractmethod
    async def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """A tenant's keys, revoked ones included."""

    @abc.abstractmethod
    async def revoke_api_key(self, tenant_id: str, key_id: str, at: datetime, audit: AuditEvent) -> bool:
        """Revoke a key; ``False`` if the tenant has no such unrevoked key."""

    # connectors
    @abc.abstractmethod
    async def insert_connector(
        self,
        tenant_id: str,
        info: ConnectorInfo,
        secret: Ciphertext | None,
        audit: AuditEvent,
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        """Add a connector; :class:`DuplicateNameError` if the name is taken in the tenant.

        With ``idempotency``, the record is stored in the same transaction;
        :class:`ConflictError` if the key is already recorded (a concurrent retry).
        """

    @abc.abstractmethod
    async def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        """The recorded first answer for an idempotency key."""

    @abc.abstractmethod
    async def delete_idempotency(self, tenant_id: str, key: str) -> None:
        """Forget an expired idempotency key."""

    @abc.abstractmethod
    async def get_connector(self, tenant_id: str, connector_id: str) -> ConnectorInfo | None:
        """A connector by id, or ``None`` (also for another tenant's id)."""

    @abc.abstractmethod
    async def list_connectors(
        self,
        tenant_id: str,
        *,
        connector_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
        after: str | None = None,
    ) -> list[ConnectorInfo]:
        """Connectors in id order; ``after`` (an id) gives keyset pages, ``offset`` the first API's paging."""

    @abc.abstractmethod
    async def update_connector(
        self,
        tenant_id: str,
        connector_id: str,
        changes: dict[str, Any],
        *,
        expected_version: int,
        secret: Ciphertext | Keep | None = KEEP,
        audit: AuditEvent,
    ) -> ConnectorInfo | None:
        """Apply column changes and bump the version, if the version is still ``expected_version``.

        ``None`` if the connector does not exist; :class:`VersionConflictError` if
        the version moved; :class:`DuplicateNameError` on a taken name.
        """

    @abc.abstractmethod
    async def delete_connector(
        self, tenant_id: str, connector_id: str, audit: AuditEvent, expected_version: int | None = None
    ) -> bool:
        """Delete a connector, its secrets and its history; ``False`` if it does not exist."""

    @abc.abstractmethod
    async def get_secret(self, tenant_id: str, connector_id: str) -> Ciphertext | None:
        """A connector's sealed secret tree."""

    @abc.abstractmethod
    async def record_test(
        self,
        tenant_id: str,
        result: TestResult,
        audit: AuditEvent,
        changes_for: Callable[[ConnectorInfo], dict[str, Any]],
        *,
        failure_threshold: int = 3,
    ) -> bool:
        """Store a test result in the history and apply ``changes_for(connector)``,
        computed from the connector as it is inside the transaction (a pause set while
        the test ran is seen). ``False`` (nothing stored) if the connector is gone.

        Counts consecutive failures: the ``failure_threshold``-th in a row (the
        connector's own threshold if it has one) appends ``connector.down`` to the
        outbox, and the next success ``connector.recovered``, in the same transaction."""

    @abc.abstractmethod
    async def history(
        self, tenant_id: str, connector_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[tuple[str, TestResult]]:
        """Past results newest first, as ``(result id, result)``; ``before`` is a result id."""

    @abc.abstractmethod
    async def append_audit(self, audit: AuditEvent) -> None:
        """Record an audit event that goes with no other write."""

    @abc.abstractmethod
    async def list_audit(
        self,
        tenant_id: str,
        *,
        limit: int = 100,
        before: str | None = None,
        connector_id: str | None = None,
    ) -> list[AuditEvent]:
        """A tenant's audit events, newest first; ``before`` is an event id."""

    # secrets rotation
    @abc.abstractmethod
    async def list_secrets(self, tenant_id: str) -> list[tuple[str, Ciphertext]]:
        """Every sealed secret of a tenant, by connector id."""

    @abc.abstractmethod
    async def replace_secret(
        self, tenant_id: str, connector_id: str, old: Ciphertext, new: Ciphertext
    ) -> bool:
        """Swap a sealed secret if it is still ``old`` (so rotation never loses an update)."""

    @abc.abstractmethod
    async def secret_key_usage(self) -> dict[str, int]:
        """How many secrets each key id seals, across tenants (operators only)."""
