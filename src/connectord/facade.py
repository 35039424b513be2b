"""ConnectorsFacade: the one async core behind the library, the REST API, the SDK and the CLI.

It validates input, keeps secrets write-only and encrypted, enforces the
status lifecycle (``docs/status-lifecycle.md``), audits every change and test,
and has probes run. It calls the store, the type registry and the secrets key
ring, over modules of their own: :mod:`~connectord.definitions` (one validation
path for every definition), :mod:`~connectord.lifecycle` (statuses),
:mod:`~connectord.runner` (probes under a timeout), :mod:`~connectord.paging`
and :mod:`~connectord.idempotency`. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from connectord import idempotency
from connectord.definitions import Definition, connector_type, validate_definition
from connectord.errors import (
    ConflictError,
    FieldError,
    InvalidTransitionError,
    NotFoundError,
    ValidationError,
    VersionConflictError,
)
from connectord.lifecycle import changes_after_test, check_status, next_status
from connectord.model import (
    AuditEvent,
    ConnectorInfo,
    ConnectorStatus,
    Page,
    TestResult,
    new_id,
    utcnow,
)
from connectord.network.egress import EgressPolicy
from connectord.paging import MAX_LIMIT, check_limit, check_offset, decode_cursor, encode_cursor
from connectord.runner import ProbeRunner, TestObserver
from connectord.secrets import KeyRing, SecretTree, keyring_from_settings, secret_paths
from connectord.settings import Settings
from connectord.store.base import KEEP, IdempotencyRecord, Store
from connectord.types.registry import TypeRegistry
from connectord.validation import check_metadata, check_name, check_tenant_id, is_id

__all__ = ["MAX_LIMIT", "ConnectorsFacade", "get_connectors_facade"]

logger = logging.getLogger("connectord")

_UNCHECKED: Any = object()  # no tenant given: a caller passing None is still checked


class ConnectorsFacade:
    """Connector operations for every caller. Every method takes the tenant id.

    Construct it with a store (``connectord.store.open_store(settings)``) or let
    :func:`get_connectors_facade` build one from the environment. The store is
    started on first use; call :meth:`aclose` (or use ``async with``) to release it.
    """

    def __init__(
        self,
        store: Store | None = None,
        settings: Settings | None = None,
        *,
        registry: TypeRegistry | None = None,
        keyring: KeyRing | None = None,
    ) -> None:
        from connectord.store.sql import open_store

        self.settings = settings or Settings()
        self.settings.check_safe()
        self.store = store or open_store(self.settings)
        self._registry = registry or TypeRegistry()
        self.keyring = keyring or keyring_from_settings(self.settings.secret_key, self.settings.data_dir)
        #: Runs the probes; a scheduler may share it.
        self.runner = ProbeRunner(self._registry, self.settings, EgressPolicy(self.settings.egress_allow))
        self._started = False
        self._start_lock = asyncio.Lock()

    @property
    def registry(self) -> TypeRegistry:
        """The connector-type registry: types, capabilities and config schemas."""
        return self._registry

    @property
    def egress(self) -> EgressPolicy:
        """The egress policy probes are held to."""
        return self.runner.egress

    @egress.setter
    def egress(self, policy: EgressPolicy) -> None:
        self.runner.egress = policy

    @property
    def test_observers(self) -> list[TestObserver]:
        """Called with (connector type, result) after every probe run (metrics hook)."""
        return self.runner.observers

    async def start(self) -> None:
        """Start the store (applies migrations). Called on first use."""
        if self._started:
            return
        async with self._start_lock:
            if not self._started:
                await self.store.start()
                self._started = True

    async def aclose(self) -> None:
        """Release the store."""
        if self._started:
            await self.store.close()
            self._started = False

    async def __aenter__(self) -> ConnectorsFacade:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _store(self, tenant_id: object = _UNCHECKED) -> Store:
        """The started store, after checking the tenant id every public method takes
        (operators' calls, which act on no one tenant, pass none)."""
        if tenant_id is not _UNCHECKED:
            check_tenant_id(tenant_id)
        if not self._started:
            await self.start()
        return self.store

    # --- reads -----------------------------------------------------------------------

    async def list_connectors(
        self,
        tenant_id: str,
        connector_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ConnectorInfo]:
        """A tenant's connectors in creation order (offset paging, as the first API had)."""
        offset = check_offset(offset)
        store = await self._store(tenant_id)
        return await store.list_connectors(
            tenant_id,
            connector_type=_type_filter(connector_type),
            status=check_status(status),
            limit=check_limit(limit),
            offset=offset,
        )

    async def list_connectors_page(
        self,
        tenant_id: str,
        connector_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        offset: int = 0,
    ) -> Page[ConnectorInfo]:
        """One keyset page: the cost is the same on page 1 and page 10,000.

        Pass the previous page's ``next_cursor`` to continue; rows inserted while
        paging never cause a duplicate or a gap.
        """
        limit = check_limit(limit)
        store = await self._store(tenant_id)
        items = await store.list_connectors(
            tenant_id,
            connector_type=_type_filter(connector_type),
            status=check_status(status),
            limit=limit + 1,
            offset=check_offset(offset),
            after=decode_cursor(cursor),
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id) if more else None)

    async def get_connector(self, connector_id: str, tenant_id: str) -> ConnectorInfo | None:
        """A connector, or ``None`` if the tenant has none with this id."""
        store = await self._store(tenant_id)
        return await self._get(store, tenant_id, connector_id)

    @staticmethod
    async def _get(store: Store, tenant_id: str, connector_id: str) -> ConnectorInfo | None:
        # An id this store never gives cannot exist: answer without asking the
        # database, which may refuse such text (PostgreSQL and NUL).
        if not is_id(connector_id):
            return None
        return await store.get_connector(tenant_id, connector_id)

    # --- writes ----------------------------------------------------------------------

    async def register_connector(
        self,
        tenant_id: str,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        actor: str = "library",
        idempotency_key: str | None = None,
    ) -> ConnectorInfo:
        """Validate and store a new connector (status ``registered``); secrets are sealed.

        With ``idempotency_key``, a retry of the same request within 24 hours returns
        the first result instead of creating a duplicate; the same key with another
        request is refused.
        """
        store = await self._store(tenant_id)
        record: IdempotencyRecord | None = None
        if idempotency_key is not None:
            request = [name, connector_type, endpoint, config, metadata]
            record = idempotency.new_record(idempotency_key, request, self.keyring)
            first = await idempotency.replay(store, tenant_id, record)
            if first is not None:
                return first
        info, secrets = self._build(tenant_id, name, connector_type, endpoint, config, metadata)
        sealed = self.keyring.seal_tree(secrets, tenant_id, info.id) if secrets else None
        audit = self._audit(
            tenant_id, actor, "connector.create", info.id, {"name": info.name, "type": info.connector_type}
        )
        if record is not None:
            record = idempotency.with_response(record, info)
        try:
            await store.insert_connector(tenant_id, info, sealed, audit, record)
        except ConflictError:
            first = await idempotency.replay(store, tenant_id, record) if record is not None else None
            if first is None:
                raise
            return first
        logger.info("connector created", extra={"tenant_id": tenant_id, "connector_id": info.id})
        return info

    def _build(
        self,
        tenant_id: str,
        name: str,
        type_name: str,
        endpoint: str | None,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[ConnectorInfo, SecretTree]:
        """A validated, unsaved connector and its secrets."""
        ctype = connector_type(self._registry, type_name)
        name = check_name(name)
        meta = check_metadata(metadata)
        definition = validate_definition(ctype, endpoint, config)
        info = ConnectorInfo(
            id=new_id(),
            name=name,
            connector_type=ctype.name,
            status=ConnectorStatus.REGISTERED,
            capabilities=definition.capabilities,
            endpoint=definition.endpoint,
            tenant_id=tenant_id,
            created_at=utcnow(),
            updated_at=None,
            last_used_at=None,
            config=definition.public,
            metadata=meta,
            secret_fields=secret_paths(definition.secrets),
            version=1,
        )
        return info, definition.secrets

    async def update_connector(
        self,
        connector_id: str,
        tenant_id: str,
        name: str | None = None,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        status: str | None = None,
        expected_version: int | None = None,
        actor: str = "library",
    ) -> ConnectorInfo | None:
        """Change the fields given; ``None`` if there is no such connector.

        ``endpoint=""`` clears the endpoint. A ``config`` replaces the stored one,
        except that secrets it omits are kept and secrets it sets to ``None`` are
        removed. With ``expected_version``, a stale version raises
        :class:`VersionConflictError` and changes nothing; without it, the last
        write wins: a concurrent change is retried on the fresh state.
        """
        store = await self._store(tenant_id)
        while True:
            current = await self._get(store, tenant_id, connector_id)
            if current is None:
                return None
            if expected_version is not None and current.version != expected_version:
                raise VersionConflictError(
                    f"the connector is at version {current.version}, not {expected_version}",
                    current_version=current.version,
                )
            changes, secret = await self._changes(current, name, endpoint, config, metadata, status)
            if not changes:
                return current
            audit = self._audit(
                tenant_id, actor, "connector.update", connector_id, {"changed": sorted(changes)}
            )
            changes["updated_at"] = utcnow()
            try:
                return await store.update_connector(
                    tenant_id,
                    connector_id,
                    changes,
                    expected_version=current.version,
                    secret=secret,
                    audit=audit,
                )
            except VersionConflictError:
                # Without If-Match the last write wins: each retry follows a write
                # that succeeded, so the loop ends once the writers do.
                if expected_version is not None:
                    raise

    async def _changes(
        self,
        current: ConnectorInfo,
        name: str | None,
        endpoint: str | None,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        status: str | None,
    ) -> tuple[dict[str, Any], Any]:
        """The changed fields of an update (nothing for what is as stored) and the
        sealed secrets to store (``KEEP`` when they do not change)."""
        changes: dict[str, Any] = {}
        secret: Any = KEEP
        if name is not None and name != current.name:
            changes["name"] = check_name(name)
        if metadata is not None:
            meta = check_metadata(metadata)
            if meta != current.metadata:
                changes["metadata"] = meta
        if endpoint is not None or config is not None:
            stored = await self._open_secrets(current)
            definition = self._redefine(current, endpoint, config, stored)
            if definition.endpoint != current.endpoint:
                changes["endpoint"] = definition.endpoint
            if definition.public != current.config:
                changes["config"] = definition.public
            if definition.secrets != stored:
                secrets = definition.secrets
                secret = self.keyring.seal_tree(secrets, current.tenant_id, current.id) if secrets else None
                changes["secret_fields"] = secret_paths(secrets)
            if definition.capabilities != current.capabilities:
                changes["capabilities"] = definition.capabilities
        definition_changed = bool({"endpoint", "config", "secret_fields"} & changes.keys())
        new_status = next_status(current.status, status, definition_changed)
        if new_status != current.status:
            changes["status"] = new_status
        return changes, secret

    def _redefine(
        self,
        current: ConnectorInfo,
        endpoint: str | None,
        config: Mapping[str, Any] | None,
        stored: SecretTree,
    ) -> Definition:
        """The definition an update gives: the fields it omits are as stored."""
        ctype = self._registry.get(current.connector_type)
        new_endpoint: object = current.endpoint if endpoint is None else endpoint
        new_config: object = dict(current.config) if config is None else config
        return validate_definition(
            ctype, new_endpoint, new_config, carried=stored, stored=(current.endpoint, current.config)
        )

    async def delete_connector(
        self,
        connector_id: str,
        tenant_id: str,
        *,
        expected_version: int | None = None,
        actor: str = "library",
    ) -> bool:
        """Delete a connector with its secrets and history; ``False`` if there is none."""
        store = await self._store(tenant_id)
        if not is_id(connector_id):
            return False
        audit = self._audit(tenant_id, actor, "connector.delete", connector_id, {})
        return await store.delete_connector(tenant_id, connector_id, audit, expected_version)

    # --- tests -----------------------------------------------------------------------

    async def test_connector(
        self, connector_id: str, tenant_id: str, *, actor: str = "library"
    ) -> TestResult:
        """Really connect: decrypt the secrets, run the type's probe under its timeout,
        record the result, and set ``status`` and ``last_used_at``.

        A failed connection is a ``TestResult`` with ``success=False``; a missing
        connector raises :class:`NotFoundError`, a deprecated one
        :class:`InvalidTransitionError`.
        """
        store = await self._store(tenant_id)
        info = await self._get(store, tenant_id, connector_id)
        if info is None:
            raise NotFoundError("no such connector")
        if info.status == ConnectorStatus.DEPRECATED:
            raise InvalidTransitionError("the connector is deprecated; tests are refused")
        result, capabilities = await self._probe_info(info)
        await self._record(info, result, capabilities, actor)
        return result

    async def _probe_info(self, info: ConnectorInfo) -> tuple[TestResult, list[str] | None]:
        secrets = await self._open_secrets(info)
        result, capabilities = await self.runner.run(
            info.connector_type, info.endpoint, info.config, secrets, info.tenant_id
        )
        result.connector_id = info.id
        return result, capabilities

    async def _record(
        self, info: ConnectorInfo, result: TestResult, capabilities: list[str] | None, actor: str
    ) -> None:
        audit = self._audit(info.tenant_id, actor, "connector.test", info.id, _test_audit(result))
        # The probe took time: the verdict is applied to the connector as it is inside
        # the store's transaction, so a pause or retirement set during the test stands.
        await self.store.record_test(
            info.tenant_id,
            result,
            audit,
            lambda current: changes_after_test(current, result, capabilities),
            failure_threshold=self.settings.failure_threshold,
        )

    async def test_connectors(
        self,
        tenant_id: str,
        connector_type: str | None = None,
        status: str | None = None,
        *,
        concurrency: int = 16,
        actor: str = "library",
    ) -> AsyncIterator[TestResult]:
        """Test every matching connector (deprecated ones excluded), at most
        ``concurrency`` at once, yielding results as they finish. Each result is
        recorded exactly as :meth:`test_connector` records it.
        """
        check_limit(concurrency, "concurrency")
        gate = asyncio.Semaphore(concurrency)
        pending: set[asyncio.Task[TestResult]] = set()

        async def one(info: ConnectorInfo) -> TestResult:
            # The slot bounds connections, not bookkeeping: recording happens outside it.
            async with gate:
                result, capabilities = await self._probe_info(info)
            await self._record(info, result, capabilities, actor)
            return result

        try:
            cursor: str | None = None
            while True:
                page = await self.list_connectors_page(tenant_id, connector_type, status, MAX_LIMIT, cursor)
                for info in page.items:
                    if info.status == ConnectorStatus.DEPRECATED:
                        continue
                    while len(pending) >= 2 * concurrency:  # bound what waits in memory
                        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            yield task.result()
                    pending.add(asyncio.create_task(one(info)))
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
        finally:
            for task in pending:
                task.cancel()

    async def test_definition(
        self,
        tenant_id: str,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        actor: str = "library",
    ) -> TestResult:
        """Test an unsaved definition: validated like a registration, nothing stored but the audit event."""
        store = await self._store(tenant_id)
        info, secrets = self._build(tenant_id, name, connector_type, endpoint, config, metadata)
        result, _ = await self.runner.run(info.connector_type, info.endpoint, info.config, secrets, tenant_id)
        await store.append_audit(
            self._audit(tenant_id, actor, "connector.test_unsaved", None, _test_audit(result))
        )
        return result

    # --- history and audit -----------------------------------------------------------

    async def history(
        self, connector_id: str, tenant_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[TestResult]:
        """Past test results of a connector, newest first; :class:`NotFoundError` if none."""
        store = await self._store(tenant_id)
        if await self._get(store, tenant_id, connector_id) is None:
            raise NotFoundError("no such connector")
        limit = check_limit(limit)
        rows = await store.history(tenant_id, connector_id, limit=limit + 1, before=decode_cursor(cursor))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([r for _, r in rows], encode_cursor(rows[-1][0]) if more else None)

    async def audit(
        self, tenant_id: str, limit: int = 100, cursor: str | None = None, connector_id: str | None = None
    ) -> Page[AuditEvent]:
        """The tenant's audit events, newest first."""
        store = await self._store(tenant_id)
        limit = check_limit(limit)
        if connector_id is not None and not is_id(connector_id):
            return Page([], None)
        events = await store.list_audit(
            tenant_id, limit=limit + 1, before=decode_cursor(cursor), connector_id=connector_id
        )
        more = len(events) > limit
        events = events[:limit]
        return Page(events, encode_cursor(events[-1].id) if more else None)

    # --- helpers ---------------------------------------------------------------------

    async def _open_secrets(self, info: ConnectorInfo) -> SecretTree:
        if not info.secret_fields:
            return {}
        sealed = await self.store.get_secret(info.tenant_id, info.id)
        return self.keyring.open_tree(sealed, info.tenant_id, info.id) if sealed is not None else {}

    @staticmethod
    def _audit(
        tenant_id: str, actor: str, action: str, connector_id: str | None, details: dict[str, Any]
    ) -> AuditEvent:
        return AuditEvent(new_id(), tenant_id, actor, action, connector_id, utcnow(), details)


def _type_filter(connector_type: str | None) -> str | None:
    if connector_type is not None and (len(connector_type) > 64 or "\x00" in connector_type):
        raise ValidationError(
            "invalid connector_type", [FieldError(("connector_type",), "is not a connector type name")]
        )
    return connector_type


def _test_audit(result: TestResult) -> dict[str, Any]:
    return {"success": result.success, "error_kind": result.error_kind, "latency_ms": result.latency_ms}


_facade: ConnectorsFacade | None = None


def get_connectors_facade() -> ConnectorsFacade:
    """The process-wide facade, configured from ``CONNECTORD_*`` settings; created on first call."""
    global _facade
    if _facade is None:
        _facade = ConnectorsFacade()
    return _facade
