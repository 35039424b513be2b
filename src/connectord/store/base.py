"""The store interface. Every method that touches a tenant's data takes ``tenant_id``.

The one exception is :meth:`Store.find_api_key`: authentication is what tells
us the tenant, so it looks a key up by its hash alone. The admin-wide methods
(``list_tenants``, ``secret_key_usage``) serve operators' commands.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectord.model import (
    WHOLE_TENANT,
    AuditEvent,
    ConnectorInfo,
    DeliveryInfo,
    Event,
    Reach,
    RecentTests,
    TenantRecord,
    TestResult,
    WebhookInfo,
)
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
    #: The connectors the key covers (``docs/use.md``); the whole tenant by default.
    reach: Reach = WHOLE_TENANT


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first answer to a create sent with an ``Idempotency-Key``."""

    key: str
    request_hash: str
    response: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A webhook delivery claimed for sending, with what sending needs (a worker's view)."""

    id: str
    tenant_id: str
    webhook_id: str
    url: str
    #: The webhook's sealed signing secret.
    secret: Ciphertext
    event_id: str
    event_type: str
    connector_id: str | None
    #: The JSON body, exactly as signed and sent.
    payload: str
    #: Attempts made, this one included.
    attempts: int


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One kept test result, as the health summary reads it."""

    tested_at: datetime
    success: bool
    latency_ms: int | None
    error_kind: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """What a connector's health summary is computed from (``connectord.health.summary``)."""

    connector_id: str
    status: str
    created_at: datetime
    updated_at: datetime | None
    consecutive_failures: int
    down_since: datetime | None
    #: ``(checks, successes)`` after each window's start, by window name.
    windows: dict[str, tuple[int, int]]
    #: The latencies of the successful checks after the latency window's start, ascending.
    latencies: list[int]
    #: The newest result, and the newest failed one (any age).
    last: CheckRecord | None
    last_failure: CheckRecord | None
    #: ``tested_at`` of the oldest result in the newest run of results that all share
    #: the newest result's outcome (``None`` without results).
    streak_start: datetime | None


@dataclass(frozen=True, slots=True)
class BulkTestRecord:
    """A bulk test as stored: ``filters`` and ``summary`` are JSON objects."""

    id: str
    tenant_id: str
    status: str
    filters: dict[str, Any]
    total: int
    done: int
    ok: int
    summary: dict[str, Any]
    owner: str | None
    created_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimedCheck:
    """A scheduled check leased to one process: the connector as claimed and its schedule."""

    connector: ConnectorInfo
    #: When the check was due (its ``next_check_at`` when claimed).
    due_at: datetime
    #: Seconds between its checks: its own ``check_interval``, else the server's default.
    interval: float
    #: When the lease ends and another process may take the check over.
    lease_until: datetime


class SessionLock(abc.ABC):
    """A lock held by this process's session with the database (:meth:`Store.try_session_lock`)."""

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """Whether the lock is still held (``False`` once its connection is gone)."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Give the lock up."""


class Keep:
    """Marker: leave the stored secret as it is."""


KEEP = Keep()


@dataclass(frozen=True, slots=True)
class OAuthTokenRecord:
    """A connector's OAuth 2.0 access token as stored (sealed), and its refresh lease."""

    #: A keyed hash of the auth settings the token was obtained with (another: not valid).
    fingerprint: str | None
    token: Ciphertext | None
    #: When to refresh it (its expiry less a margin), and when it expires.
    refresh_at: datetime | None
    expires_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None


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

    @abc.abstractmethod
    async def set_checkout(self, tenant_id: str, enabled: bool, audit: AuditEvent) -> bool:
        """Turn the tenant's credential checkout on or off; ``False`` if there is no such tenant."""

    @abc.abstractmethod
    async def checkout_enabled(self, tenant_id: str) -> bool:
        """Whether the tenant allows credential checkout: ``True`` for a tenant without a row
        (the library's own tenant ids), as for a tenant that never turned it off."""

    # connectors
    @abc.abstractmethod
    async def insert_connector(
        self,
        tenant_id: str,
        info: ConnectorInfo,
        secret: Ciphertext | None,
        audit: AuditEvent,
        idempotency: IdempotencyRecord | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        """Add a connector; :class:`DuplicateNameError` if the name is taken in the tenant.

        With ``idempotency``, the record is stored in the same transaction;
        :class:`ConflictError` if the key is already recorded (a concurrent retry).
        ``events`` go to the outbox in the same transaction (so do those of the
        update and the delete).
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
        name_contains: str | None = None,
        ids: Collection[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[ConnectorInfo]:
        """Connectors in id order; ``after`` (an id) gives keyset pages, ``offset`` the first API's paging.
        ``name_contains`` keeps those whose name holds that text, ignoring ASCII case.

        ``ids`` and ``metadata`` are a narrowed key's reach (:class:`~connectord.model.Reach`):
        ``ids`` keeps those ids, ``metadata`` those whose metadata holds each pair as a string
        value; given both, a connector matching either is kept (the reach is their union)."""

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
        events: Sequence[Event] = (),
    ) -> ConnectorInfo | None:
        """Apply column changes and bump the version, if the version is still ``expected_version``.

        ``None`` if the connector does not exist; :class:`VersionConflictError` if
        the version moved; :class:`DuplicateNameError` on a taken name.
        """

    @abc.abstractmethod
    async def delete_connector(
        self,
        tenant_id: str,
        connector_id: str,
        audit: AuditEvent,
        expected_version: int | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        """Delete a connector, its secrets and its history; ``False`` if it does not exist."""

    @abc.abstractmethod
    async def get_secret(self, tenant_id: str, connector_id: str) -> Ciphertext | None:
        """A connector's sealed secret tree."""

    @abc.abstractmethod
    async def mark_used(self, connector_ids: Sequence[str], at: datetime) -> int:
        """Set ``last_used_at`` to ``at`` on these connectors (any tenant's: the usage
        recorder's batch, ``connectord.usage``) where it is older, in one statement;
        bookkeeping, so the version does not change. The number of rows changed."""

    @abc.abstractmethod
    async def record_test(
        self,
        tenant_id: str,
        result: TestResult,
        audit: AuditEvent | None,
        changes_for: Callable[[ConnectorInfo], dict[str, Any]],
        *,
        failure_threshold: int = 3,
    ) -> bool:
        """Store a test result in the history and apply ``changes_for(connector)``,
        computed from the connector as it is inside the transaction (a pause set while
        the test ran is seen). ``False`` (nothing stored) if the connector is gone.
        ``audit`` is appended in the same transaction (``None``: a scheduled check,
        which only the history records).

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
    async def sealed_tenant_ids(self) -> list[str]:
        """Every tenant id that holds a sealed secret (a connector's or a webhook's), with a
        tenant record or not (the library's tenant ids have none): what a rotation walks."""

    @abc.abstractmethod
    async def replace_secret(
        self, tenant_id: str, connector_id: str, old: Ciphertext, new: Ciphertext
    ) -> bool:
        """Swap a sealed secret if it is still ``old`` (so rotation never loses an update)."""

    @abc.abstractmethod
    async def secret_key_usage(self) -> dict[str, int]:
        """How many secrets each key id seals, across tenants (operators only)."""

    # --- operations ---------------------------------------------------------------------

    @abc.abstractmethod
    async def schema_revision(self) -> str | None:
        """The migration the database is at (``None`` before any); raises when it does not
        answer. The readiness check's one round trip."""

    # --- webhooks, deliveries and events (docs/webhooks.md) -----------------------------

    @abc.abstractmethod
    async def insert_webhook(
        self, tenant_id: str, info: WebhookInfo, secret: Ciphertext, audit: AuditEvent
    ) -> None:
        """Add a webhook with its sealed signing secret."""

    @abc.abstractmethod
    async def get_webhook(self, tenant_id: str, webhook_id: str) -> WebhookInfo | None:
        """A webhook by id, or ``None`` (also for another tenant's id)."""

    @abc.abstractmethod
    async def list_webhooks(
        self, tenant_id: str, *, limit: int = 100, after: str | None = None
    ) -> list[WebhookInfo]:
        """A tenant's webhooks in id order; ``after`` (an id) gives keyset pages."""

    @abc.abstractmethod
    async def update_webhook(
        self,
        tenant_id: str,
        webhook_id: str,
        changes: dict[str, object],
        *,
        expected_version: int,
        audit: AuditEvent,
    ) -> WebhookInfo | None:
        """Apply column changes and bump the version if it is still ``expected_version``;
        ``None`` if there is no such webhook, :class:`VersionConflictError` if it moved."""

    @abc.abstractmethod
    async def delete_webhook(self, tenant_id: str, webhook_id: str, audit: AuditEvent) -> bool:
        """Delete a webhook and its deliveries; ``False`` if there is none."""

    @abc.abstractmethod
    async def list_deliveries(
        self, tenant_id: str, webhook_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[DeliveryInfo]:
        """A webhook's deliveries, newest first; ``before`` is a delivery id."""

    @abc.abstractmethod
    async def claim_deliveries(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of enabled webhooks to ``owner`` (across
        tenants: a worker's call), counting the attempt. A delivery is due when it is
        pending, its time has come and no live lease holds it; one waits while an earlier
        event of the same connector is still pending for the same webhook (per-connector
        order). On PostgreSQL, replicas claiming at once skip each other's rows."""

    @abc.abstractmethod
    async def finish_delivery(
        self,
        delivery_id: str,
        owner: str,
        *,
        status: str,
        at: datetime,
        next_attempt_at: datetime | None,
        last_status: int | None,
        last_error: str | None,
    ) -> bool:
        """Record an attempt's outcome and release the lease, if ``owner`` still holds it
        (``False`` otherwise: the lease expired and another worker took the delivery)."""

    @abc.abstractmethod
    async def release_deliveries(self, owner: str) -> int:
        """Drop every lease ``owner`` holds (a worker stopping), so others may send at once."""

    @abc.abstractmethod
    async def events_after(self, tenant_id: str, after_seq: int, *, limit: int = 100) -> list[Event]:
        """A tenant's events with ``seq`` above ``after_seq``, oldest first."""

    @abc.abstractmethod
    async def last_event_seq(self, tenant_id: str) -> int:
        """The ``seq`` of the tenant's newest event (0 when it has none)."""

    @abc.abstractmethod
    async def list_webhook_secrets(self, tenant_id: str) -> list[tuple[str, Ciphertext]]:
        """Every sealed signing secret of a tenant, by webhook id (key rotation)."""

    @abc.abstractmethod
    async def replace_webhook_secret(
        self, tenant_id: str, webhook_id: str, old: Ciphertext, new: Ciphertext
    ) -> bool:
        """Swap a sealed signing secret if it is still ``old``."""

    # --- health summary and bulk tests (docs/health.md) ---------------------------------

    @abc.abstractmethod
    async def health_facts(
        self,
        tenant_id: str,
        connector_id: str,
        *,
        windows: Mapping[str, datetime],
        latency_since: datetime,
    ) -> HealthFacts | None:
        """The facts of a connector's health summary: results counted after each window's
        start (``{"1h": start, ...}``), latencies of successes after ``latency_since``, the
        newest result, failure and streak. ``None`` if there is no such connector."""

    @abc.abstractmethod
    async def count_connectors(
        self,
        tenant_id: str,
        *,
        connector_type: str | None = None,
        status: str | None = None,
        ids: Collection[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """How many connectors match the filters, deprecated ones excluded (a bulk test's total);
        ``ids`` and ``metadata`` as in :meth:`list_connectors`."""

    @abc.abstractmethod
    async def insert_bulk_test(self, record: BulkTestRecord) -> None:
        """Add a bulk test."""

    @abc.abstractmethod
    async def update_bulk_test(
        self,
        tenant_id: str,
        bulk_id: str,
        *,
        status: str,
        total: int,
        done: int,
        ok: int,
        summary: Mapping[str, Any],
        finished_at: datetime | None,
    ) -> None:
        """Record a bulk test's progress (or its end)."""

    @abc.abstractmethod
    async def get_bulk_test(self, tenant_id: str, bulk_id: str) -> BulkTestRecord | None:
        """A bulk test by id, or ``None`` (also for another tenant's id)."""

    # --- health scheduler and history retention (docs/health.md) -----------------------
    # The scheduling columns are bookkeeping: writing them never bumps a connector's version.

    @abc.abstractmethod
    async def claim_due_checks(
        self,
        owner: str,
        now: datetime,
        *,
        limit: int,
        lease_seconds: float,
        default_interval: float,
        skip_tenants: Sequence[str] = (),
    ) -> list[ClaimedCheck]:
        """Lease up to ``limit`` due checks to ``owner``, earliest due first: connectors whose
        ``next_check_at`` has passed, not leased (or their lease expired), neither
        ``disconnected`` nor ``deprecated``, with an interval above 0, of no tenant in
        ``skip_tenants``. Concurrent callers never get the same connector. On PostgreSQL a
        lease also ends when its owner's session lock (:meth:`try_session_lock` of
        ``"owner:" + owner``) is gone: a replica that died loses its leases at once."""

    @abc.abstractmethod
    async def renew_check(self, tenant_id: str, connector_id: str, owner: str, lease_until: datetime) -> bool:
        """Extend ``owner``'s lease on a check; ``False`` if the lease is no longer ``owner``'s."""

    @abc.abstractmethod
    async def finish_check(
        self, tenant_id: str, connector_id: str, owner: str, next_check_at: datetime
    ) -> bool:
        """Set the next due time and clear the lease, if ``owner`` still holds it."""

    @abc.abstractmethod
    async def release_leases(self, owner: str | None) -> int:
        """Clear every lease ``owner`` holds (a process stopping; ``None``: every lease, stale
        ones on SQLite, where one process schedules): the checks stay due, for others."""

    @abc.abstractmethod
    async def schedule_unscheduled(self, now: datetime, *, default_interval: float, limit: int) -> int:
        """Give up to ``limit`` schedulable connectors without a ``next_check_at`` one, spread at
        random over ``[now, now + interval)`` so first checks do not come all at once."""

    @abc.abstractmethod
    async def unschedule_ineligible(self, now: datetime, *, default_interval: float, limit: int) -> int:
        """Clear ``next_check_at`` of up to ``limit`` due connectors that are paused, retired or
        have checks turned off, so due-check scans stop meeting them; :meth:`schedule_unscheduled`
        schedules them again once they are eligible."""

    @abc.abstractmethod
    async def prune_history_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` test results older than ``cutoff`` (one short transaction)."""

    @abc.abstractmethod
    async def prune_history_beyond(
        self, keep: int, *, after: str | None, connectors: int, limit: int
    ) -> tuple[int, str | None]:
        """For the next ``connectors`` connectors after the id ``after`` (every tenant), delete
        test results beyond each one's newest ``keep``, at most ``limit`` rows in all: the rows
        deleted and where to continue (``None`` when the walk reached the end)."""

    @abc.abstractmethod
    async def try_session_lock(self, name: str) -> SessionLock | None:
        """Take the lock ``name`` for this process unless another process holds it (then
        ``None``). PostgreSQL: an advisory lock on a connection of its own, which ends when
        the process does, however it ends; SQLite: always granted, since one process of the
        data dir runs the background work."""

    # --- the web console's list rows (docs/console.md) ---

    @abc.abstractmethod
    async def recent_tests(
        self, tenant_id: str, connector_ids: Sequence[str], since: datetime
    ) -> dict[str, RecentTests]:
        """For each of these connectors that has test results: the checks and successes
        since ``since`` and its newest test's time, in one query (a list page's rows)."""

    # --- OAuth 2.0 tokens (connectord.use.oauth; store/oauth_tokens.py) ---

    @abc.abstractmethod
    async def get_oauth_token(self, tenant_id: str, connector_id: str) -> OAuthTokenRecord | None:
        """The connector's stored token and lease, or ``None`` when it has none."""

    @abc.abstractmethod
    async def lease_oauth_token(
        self, tenant_id: str, connector_id: str, owner: str, now: datetime, until: datetime
    ) -> OAuthTokenRecord | None:
        """Take the connector's refresh lease unless another owner holds an unexpired one
        (then ``None``; also for a connector that does not exist); the row as it is."""

    @abc.abstractmethod
    async def save_oauth_token(
        self,
        tenant_id: str,
        connector_id: str,
        owner: str,
        *,
        fingerprint: str,
        token: Ciphertext,
        refresh_at: datetime,
        expires_at: datetime,
        now: datetime,
        secret_swap: tuple[Ciphertext, Ciphertext] | None = None,
    ) -> bool:
        """Store a new token and free the lease if ``owner`` still holds it; swap the
        connector's secrets (old, new) in the same transaction when still ``old``."""

    @abc.abstractmethod
    async def release_oauth_token(
        self, tenant_id: str, connector_id: str, owner: str, *, refused: str | None = None
    ) -> None:
        """Free ``owner``'s lease; ``refused`` (the grant was refused for good) also forgets
        the token and keeps ``refused`` as its fingerprint."""
