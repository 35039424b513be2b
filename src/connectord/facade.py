"""ConnectorsFacade: the one async core behind the library, the REST API, the SDK and the CLI.

It validates input, keeps secrets write-only and encrypted, enforces the
status lifecycle (``docs/status-lifecycle.md``), audits every change and test,
and runs probes under a timeout. It calls the store, the type registry and
the secrets key ring; nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python

from connectord.egress import EgressPolicy
from connectord.errors import (
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    ProbeError,
    ValidationError,
    VersionConflictError,
)
from connectord.errors import FieldError as _FieldError
from connectord.model import (
    AuditEvent,
    ConnectorInfo,
    ConnectorStatus,
    ErrorKind,
    Page,
    TestResult,
    new_id,
    utcnow,
)
from connectord.secrets import (
    KeyRing,
    SecretTree,
    keyring_from_settings,
    leaf_values,
    overlay,
    redact,
    secret_paths,
    split_secrets,
)
from connectord.settings import Settings
from connectord.store.base import KEEP, IdempotencyRecord, Keep, Store
from connectord.types.base import ConnectorConfig, ProbeContext
from connectord.types.registry import TypeRegistry
from connectord.validation import (
    check_config,
    check_metadata,
    check_name,
    check_tenant_id,
    is_id,
    split_endpoint,
)

logger = logging.getLogger("connectord")

S = ConnectorStatus
#: Statuses a user may set, and the statuses each may be set from.
USER_TRANSITIONS: dict[str, frozenset[str]] = {
    S.REGISTERED: frozenset(S) - {S.REGISTERED},
    S.CONFIGURING: frozenset({S.REGISTERED, S.READY, S.CONNECTED, S.ERROR, S.DISCONNECTED}),
    S.READY: frozenset({S.REGISTERED, S.CONFIGURING}),
    S.DISCONNECTED: frozenset(S) - {S.DEPRECATED, S.DISCONNECTED},
    S.DEPRECATED: frozenset(S) - {S.DEPRECATED},
}
#: Statuses a change of endpoint or config does not reset to ``registered``.
STICKY_STATUSES = frozenset({S.DISCONNECTED, S.DEPRECATED, S.CONFIGURING})
MAX_LIMIT = 1000
_STATUSES = frozenset(ConnectorStatus)
IDEMPOTENCY_TTL = timedelta(hours=24)
_UPDATE_RETRIES = 5
_UNCHECKED: Any = object()  # no tenant given: a caller passing None is still checked


def _check_offset(offset: int) -> int:
    if not isinstance(offset, int) or offset < 0:
        raise ValidationError("invalid offset", [_FieldError(("offset",), "must be 0 or more")])
    return offset


def _page_limit(limit: int) -> int:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            "invalid limit", [_FieldError(("limit",), f"must be between 1 and {MAX_LIMIT}")]
        )
    return limit


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
        self.egress = EgressPolicy(self.settings.egress_allow)
        self._started = False
        self._start_lock = asyncio.Lock()
        #: Called with (connector type, result) after every probe run (metrics hook).
        self.test_observers: list[Callable[[str, TestResult], None]] = []

    @property
    def registry(self) -> TypeRegistry:
        """The connector-type registry: types, capabilities and config schemas."""
        return self._registry

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
        """A tenant's connectors in creation order (the seed's offset paging)."""
        offset = _check_offset(offset)
        store = await self._store(tenant_id)
        return await store.list_connectors(
            tenant_id,
            connector_type=self._type_filter(connector_type),
            status=self._status_filter(status),
            limit=_page_limit(limit),
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
        limit = _page_limit(limit)
        store = await self._store(tenant_id)
        items = await store.list_connectors(
            tenant_id,
            connector_type=self._type_filter(connector_type),
            status=self._status_filter(status),
            limit=limit + 1,
            offset=_check_offset(offset),
            after=_decode_cursor(cursor),
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(items, _encode_cursor(items[-1].id) if more else None)

    @staticmethod
    def _type_filter(connector_type: str | None) -> str | None:
        if connector_type is not None and (len(connector_type) > 64 or "\x00" in connector_type):
            raise ValidationError(
                "invalid connector_type", [_FieldError(("connector_type",), "is not a connector type name")]
            )
        return connector_type

    @staticmethod
    def _status_filter(status: str | None) -> str | None:
        if status is not None and status not in _STATUSES:
            raise ValidationError(
                "invalid status", [_FieldError(("status",), f"must be one of {', '.join(ConnectorStatus)}")]
            )
        return status

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
            request = json.dumps(
                [name, connector_type, endpoint, config, metadata], sort_keys=True, default=str
            )
            record = IdempotencyRecord(
                idempotency_key, self.keyring.fingerprint(request.encode()), "", utcnow()
            )
            first = await self._replay(store, tenant_id, record)
            if first is not None:
                return first
        info, secrets = self._build(tenant_id, name, connector_type, endpoint, config, metadata)
        sealed = self.keyring.seal_tree(secrets, tenant_id, info.id) if secrets else None
        audit = self._audit(
            tenant_id, actor, "connector.create", info.id, {"name": info.name, "type": info.connector_type}
        )
        if record is not None:
            record = dataclasses.replace(record, response=json.dumps(info.to_dict()))
        try:
            await store.insert_connector(tenant_id, info, sealed, audit, record)
        except ConflictError:
            first = await self._replay(store, tenant_id, record) if record is not None else None
            if first is None:
                raise
            return first
        logger.info("connector created", extra={"tenant_id": tenant_id, "connector_id": info.id})
        return info

    @staticmethod
    async def _replay(store: Store, tenant_id: str, record: IdempotencyRecord) -> ConnectorInfo | None:
        """The first result recorded under this idempotency key, if any."""
        if not 1 <= len(record.key) <= 200 or not record.key.isprintable():
            raise ValidationError(
                "invalid Idempotency-Key",
                [_FieldError(("header", "Idempotency-Key"), "must be 1-200 printable characters")],
            )
        first = await store.get_idempotency(tenant_id, record.key)
        if first is None:
            return None
        if utcnow() - first.created_at > IDEMPOTENCY_TTL:
            await store.delete_idempotency(tenant_id, record.key)
            return None
        if first.request_hash != record.request_hash:
            raise ValidationError(
                "Idempotency-Key reused with a different request",
                [_FieldError(("header", "Idempotency-Key"), "was already used with a different request")],
            )
        return ConnectorInfo.from_dict(json.loads(first.response))

    def _build(
        self,
        tenant_id: str,
        name: str,
        connector_type: str,
        endpoint: str | None,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[ConnectorInfo, SecretTree]:
        """A validated, unsaved connector and its secrets."""
        ctype = self._registry.get(connector_type) if isinstance(connector_type, str) else None
        if ctype is None:
            raise ValidationError(
                "invalid connector_type", [_FieldError(("connector_type",), "must be a string")]
            )
        name = check_name(name)
        meta = check_metadata(metadata)
        endpoint, url_password = split_endpoint(endpoint)
        incoming = dict(config) if isinstance(config, Mapping) else ({} if config is None else config)
        if url_password is not None and isinstance(incoming, dict):
            incoming.setdefault("password", url_password)
        validated = check_config(ctype, incoming)
        public, secrets = _split(validated)
        now = utcnow()
        info = ConnectorInfo(
            id=new_id(),
            name=name,
            connector_type=ctype.name,
            status=ConnectorStatus.REGISTERED,
            capabilities=ctype.capabilities(validated),
            endpoint=endpoint,
            tenant_id=tenant_id,
            created_at=now,
            updated_at=None,
            last_used_at=None,
            config=public,
            metadata=meta,
            secret_fields=secret_paths(secrets),
            version=1,
        )
        return info, secrets

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
        :class:`VersionConflictError` and changes nothing; without it, a concurrent
        change is retried on the fresh state.
        """
        store = await self._store(tenant_id)
        for _ in range(_UPDATE_RETRIES):
            current = await self._get(store, tenant_id, connector_id)
            if current is None:
                return None
            if expected_version is not None and current.version != expected_version:
                raise VersionConflictError(
                    f"the connector is at version {current.version}, not {expected_version}",
                    current_version=current.version,
                )
            changes, secret = await self._changes(current, name, endpoint, config, metadata, status)
            if not changes and isinstance(secret, Keep):
                return current
            changes["updated_at"] = utcnow()
            audit = self._audit(
                tenant_id,
                actor,
                "connector.update",
                connector_id,
                {"changed": sorted(c for c in changes if c != "updated_at")},
            )
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
                if expected_version is not None:
                    raise
        raise VersionConflictError("the connector kept changing; try again")

    async def _changes(
        self,
        current: ConnectorInfo,
        name: str | None,
        endpoint: str | None,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        status: str | None,
    ) -> tuple[dict[str, Any], Any]:
        changes: dict[str, Any] = {}
        secret: Any = KEEP
        if name is not None and name != current.name:
            changes["name"] = check_name(name)
        if metadata is not None:
            changes["metadata"] = check_metadata(metadata)
        url_password: str | None = None
        if endpoint is not None:
            new_endpoint, url_password = split_endpoint(endpoint)
            if new_endpoint != current.endpoint:
                changes["endpoint"] = new_endpoint
        if config is not None or url_password is not None:
            ctype = self._registry.get(current.connector_type)
            stored = await self._open_secrets(current)
            incoming = (
                dict(config)
                if isinstance(config, Mapping)
                else (config if config is not None else dict(current.config))
            )
            if url_password is not None and isinstance(incoming, dict):
                incoming.setdefault("password", url_password)
            validated = check_config(ctype, incoming, carried=stored)
            public, secrets = _split(validated)
            if public != current.config:
                changes["config"] = public
            if secrets != stored:
                secret = self.keyring.seal_tree(secrets, current.tenant_id, current.id) if secrets else None
                changes["secret_fields"] = secret_paths(secrets)
            changes["capabilities"] = ctype.capabilities(validated)
            if changes["capabilities"] == current.capabilities:
                del changes["capabilities"]
        definition_changed = bool({"endpoint", "config", "secret_fields"} & changes.keys())
        new_status = self._next_status(current.status, status, definition_changed)
        if new_status != current.status:
            changes["status"] = new_status
        return changes, secret

    @staticmethod
    def _next_status(current: str, requested: str | None, definition_changed: bool) -> str:
        if requested is not None and requested != current:
            allowed_from = USER_TRANSITIONS.get(requested)
            if allowed_from is None:
                settable = ", ".join(USER_TRANSITIONS)
                if requested in _STATUSES:
                    raise InvalidTransitionError(
                        f"status {requested!r} is set by tests only; a user may set {settable}"
                    )
                raise ValidationError(
                    "invalid status",
                    [_FieldError(("status",), f"must be one of {', '.join(ConnectorStatus)}")],
                )
            if current not in allowed_from:
                raise InvalidTransitionError(f"a {current} connector cannot be set to {requested}")
            return requested
        if requested == current and requested in USER_TRANSITIONS:
            return current  # asked for explicitly: kept across a definition change too
        if definition_changed and current not in STICKY_STATUSES:
            return ConnectorStatus.REGISTERED
        return current

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
        return await self._test_info(info, actor)

    async def _test_info(self, info: ConnectorInfo, actor: str) -> TestResult:
        result, capabilities = await self._probe_info(info)
        await self._record(info, result, capabilities, actor)
        return result

    async def _probe_info(self, info: ConnectorInfo) -> tuple[TestResult, list[str] | None]:
        secrets = await self._open_secrets(info)
        result, capabilities = await self._run_probe(info.connector_type, info.endpoint, info.config, secrets)
        result.connector_id = info.id
        return result, capabilities

    async def _record(
        self, info: ConnectorInfo, result: TestResult, capabilities: list[str] | None, actor: str
    ) -> None:
        audit = self._audit(info.tenant_id, actor, "connector.test", info.id, _test_audit(result))
        # The probe took time: the verdict is applied to the connector as it is inside
        # the store's transaction, so a pause or retirement set during the test stands.
        await self.store.record_test(
            info.tenant_id, result, audit, lambda current: _test_changes(current, result, capabilities)
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
        if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_LIMIT:
            raise ValidationError(
                "invalid concurrency", [_FieldError(("concurrency",), f"must be between 1 and {MAX_LIMIT}")]
            )
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
        result, _ = await self._run_probe(info.connector_type, info.endpoint, info.config, secrets)
        result.connector_id = ""
        await store.append_audit(
            self._audit(tenant_id, actor, "connector.test_unsaved", None, _test_audit(result))
        )
        return result

    async def _run_probe(
        self, type_name: str, endpoint: str | None, public: Mapping[str, Any], secrets: SecretTree
    ) -> tuple[TestResult, list[str] | None]:
        result, capabilities = await self._probe(type_name, endpoint, public, secrets)
        for observe in self.test_observers:
            observe(type_name, result)
        return result, capabilities

    async def _probe(
        self, type_name: str, endpoint: str | None, public: Mapping[str, Any], secrets: SecretTree
    ) -> tuple[TestResult, list[str] | None]:
        tested_at = utcnow()
        start = time.perf_counter()
        secret_values = leaf_values(secrets)
        timeout = self.settings.probe_timeout
        try:
            ctype = self._registry.get(type_name)
            config = check_config(ctype, overlay(public, secrets))
            timeout = min(config.timeout or self.settings.probe_timeout, self.settings.probe_timeout_max)
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                outcome = await ctype.probe(self._context(endpoint, config, timeout))
        except ProbeError as exc:
            return _failure(exc.kind, redact(exc.message, secret_values), start, tested_at, exc.details), None
        except TimeoutError:
            return _failure(ErrorKind.TIMEOUT, f"no answer within {timeout:g} s", start, tested_at), None
        except ValidationError as exc:
            return _failure(ErrorKind.INVALID_CONFIG, exc.message, start, tested_at), None
        except Exception as exc:  # noqa: BLE001 - a probe bug must not become a 500
            logger.warning(
                "probe of a %s connector failed unexpectedly: %s: %s",
                type_name,
                type(exc).__name__,
                redact(str(exc), secret_values),
            )
            return _failure(
                ErrorKind.INTERNAL,
                f"the {type_name} probe failed unexpectedly ({type(exc).__name__})",
                start,
                tested_at,
            ), None
        latency = round((time.perf_counter() - start) * 1000)
        return TestResult(True, "", latency, None, outcome.details, tested_at), outcome.capabilities

    def _context(self, endpoint: str | None, config: ConnectorConfig, timeout: float) -> ProbeContext:
        return ProbeContext(
            endpoint=endpoint,
            config=config,
            timeout=timeout,
            egress=self.egress,
            file_roots=tuple(str(p) for p in self.settings.file_roots),
        )

    # --- history and audit -----------------------------------------------------------

    async def history(
        self, connector_id: str, tenant_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[TestResult]:
        """Past test results of a connector, newest first; :class:`NotFoundError` if none."""
        store = await self._store(tenant_id)
        if await self._get(store, tenant_id, connector_id) is None:
            raise NotFoundError("no such connector")
        limit = _page_limit(limit)
        rows = await store.history(tenant_id, connector_id, limit=limit + 1, before=_decode_cursor(cursor))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([r for _, r in rows], _encode_cursor(rows[-1][0]) if more else None)

    async def audit(
        self, tenant_id: str, limit: int = 100, cursor: str | None = None, connector_id: str | None = None
    ) -> Page[AuditEvent]:
        """The tenant's audit events, newest first."""
        store = await self._store(tenant_id)
        limit = _page_limit(limit)
        if connector_id is not None and not is_id(connector_id):
            return Page([], None)
        events = await store.list_audit(
            tenant_id, limit=limit + 1, before=_decode_cursor(cursor), connector_id=connector_id
        )
        more = len(events) > limit
        events = events[:limit]
        return Page(events, _encode_cursor(events[-1].id) if more else None)

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


def _split(config: ConnectorConfig) -> tuple[dict[str, Any], SecretTree]:
    # Dumped in Python mode to keep the SecretStr values, then made JSON-safe: a type may
    # use URL, path or datetime fields, and the public part is stored and served as JSON.
    public, secrets = split_secrets(config.model_dump(mode="python", exclude_unset=True, exclude_none=True))
    return to_jsonable_python(public), secrets


def _failure(
    kind: ErrorKind, message: str, start: float, tested_at: datetime, details: Mapping[str, Any] | None = None
) -> TestResult:
    latency = round((time.perf_counter() - start) * 1000)
    return TestResult(False, "", latency, message, {**(details or {}), "error_kind": str(kind)}, tested_at)


def _test_changes(
    current: ConnectorInfo, result: TestResult, capabilities: list[str] | None
) -> dict[str, Any]:
    """What a test result changes on the connector: its last use, and its status unless
    a user paused (``disconnected``) or retired (``deprecated``) it."""
    changes: dict[str, Any] = {"last_used_at": result.tested_at}
    if current.status not in (ConnectorStatus.DISCONNECTED, ConnectorStatus.DEPRECATED):
        changes["status"] = ConnectorStatus.CONNECTED if result.success else ConnectorStatus.ERROR
    if capabilities is not None and capabilities != current.capabilities:
        changes["capabilities"] = capabilities
    return changes


def _test_audit(result: TestResult) -> dict[str, Any]:
    return {"success": result.success, "error_kind": result.error_kind, "latency_ms": result.latency_ms}


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None or cursor == "":
        return None
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        canonical = str(uuid.UUID(value)) == value  # ids are UUIDs; anything else is forged
    except (binascii.Error, UnicodeDecodeError, ValueError):
        canonical = False
    if not canonical:
        raise ValidationError(
            "invalid cursor", [_FieldError(("cursor",), "is not a cursor this server gave")]
        )
    return value


_facade: ConnectorsFacade | None = None


def get_connectors_facade() -> ConnectorsFacade:
    """The process-wide facade, configured from ``CONNECTORD_*`` settings; created on first call."""
    global _facade
    if _facade is None:
        _facade = ConnectorsFacade()
    return _facade
