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
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from connectord import fingerprints, idempotency
from connectord.bulk import BulkTests
from connectord.checkout import NOT_CHECKED_OUT, build_checkout
from connectord.definitions import (
    Definition,
    check_check_interval,
    check_failure_threshold,
    connector_type,
    validate_definition,
)
from connectord.errors import (
    CheckoutDisabledError,
    ConflictError,
    FieldError,
    InvalidTransitionError,
    NotCheckedOutError,
    NotFoundError,
    NotReadyError,
    PermissionDeniedError,
    ValidationError,
    VersionConflictError,
)
from connectord.lifecycle import changes_after_test, check_status, next_status
from connectord.model import (
    UNSET,
    AuditEvent,
    BulkTest,
    Checkout,
    ConnectorInfo,
    ConnectorStatus,
    DeliveryInfo,
    ErrorKind,
    Event,
    EventType,
    HealthSummary,
    InUse,
    Page,
    Reach,
    RecentTests,
    SecretState,
    TestResult,
    Unset,
    WebhookInfo,
    new_id,
    utcnow,
)
from connectord.network.egress import EgressPolicy
from connectord.notify import webhooks
from connectord.notify.webhooks import after_update, connector_event
from connectord.paging import MAX_LIMIT, check_limit, check_offset, decode_cursor, encode_cursor
from connectord.runner import ProbeRunner, TestObserver
from connectord.secret_refs import references_in
from connectord.secrets import Ciphertext, KeyRing, SecretTree, keyring_from_settings, overlay, secret_paths
from connectord.settings import Settings
from connectord.store.base import KEEP, ClaimedCheck, ClaimedDelivery, IdempotencyRecord, SessionLock, Store
from connectord.types._http_config import OAUTH_TOKEN, OAuth2Auth
from connectord.types.registry import TypeRegistry
from connectord.usage import UsageRecorder
from connectord.use.cache import Made, UseCache
from connectord.use.oauth import TokenBroker
from connectord.validation import check_metadata, check_name, check_tenant_id, is_id

__all__ = ["MAX_LIMIT", "USE_PURPOSES", "ConnectorsFacade", "UseObserver", "get_connectors_facade"]

logger = logging.getLogger("connectord")

_UNCHECKED: Any = object()  # no tenant given: a caller passing None is still checked

#: Why a connector is used (:meth:`ConnectorsFacade.use_connector`): the HTTP proxy, the
#: MCP gateway, or a credential checkout (the only one audited one by one).
USE_PURPOSES = ("proxy", "gateway", "checkout")

#: Called with (purpose, connector type) after every use (the metrics hook).
UseObserver = Callable[[str, str], None]


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
        #: The bulk tests this process runs (docs/health.md).
        self._bulk = BulkTests()
        #: Records of tests that were cut, still being written (aclose waits for them).
        self._recording: set[asyncio.Future[None]] = set()
        #: The tasks in a test: a shutdown cancels them, and aclose lets them write that down.
        self._testing: set[asyncio.Task[Any]] = set()
        #: Coalesces the ``last_used_at`` of uses into a write per second (connectord.usage).
        self.usage = UsageRecorder(self._mark_used)
        #: Called with (purpose, connector type) after every use (metrics hook).
        self.use_observers: list[UseObserver] = []
        #: OAuth 2.0 access tokens of connectors, refreshed once across replicas (docs/use.md).
        self.tokens = TokenBroker(
            self.store,
            self.keyring,
            lambda: self.runner.egress,
            timeout=self.settings.probe_timeout,
            failure_threshold=self.settings.failure_threshold,
        )

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
        """Cancel the bulk tests still running here (each records itself cancelled); release the store."""
        await self._bulk.close()
        if self._testing:
            await asyncio.wait(self._testing, timeout=5)
        if self._recording:
            await asyncio.wait(self._recording, timeout=5)
        if self._started:
            try:
                await self.usage.aclose()
            except Exception as exc:  # noqa: BLE001 - losing a second of marks must not block the close
                logger.warning("last_used_at could not be written at close: %s", type(exc).__name__)
            await self.store.close()
            self._started = False

    async def __aenter__(self) -> ConnectorsFacade:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def check_ready(self, bound: float = 2.0) -> None:
        """Raise :class:`NotReadyError` (saying why) unless the database answers within
        ``bound`` seconds, its schema is at this release's head and the key ring is loaded."""
        from connectord.store.migrate import head_revision

        if not self.keyring.key_ids:
            raise NotReadyError("the key ring holds no key")
        try:
            async with asyncio.timeout(bound):
                store = await self._store()
                revision = await store.schema_revision()
        except TimeoutError:
            raise NotReadyError(f"the database did not answer within {bound:g} s") from None
        except Exception as exc:  # noqa: BLE001 - any driver failure means: not ready
            logger.warning("readiness: the database failed: %s", type(exc).__name__)
            raise NotReadyError(f"the database is unreachable ({type(exc).__name__})") from None
        if revision != head_revision():
            raise NotReadyError(f"the database schema is at {revision}, not at {head_revision()}")

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
        *,
        reach: Reach | None = None,
    ) -> list[ConnectorInfo]:
        """A tenant's connectors in creation order (offset paging, as the first API had);
        with ``reach``, only those it covers."""
        offset = check_offset(offset)
        store = await self._store(tenant_id)
        return await store.list_connectors(
            tenant_id,
            connector_type=_type_filter(connector_type),
            status=check_status(status),
            limit=check_limit(limit),
            offset=offset,
            **_reach_filters(reach),
        )

    async def list_connectors_page(
        self,
        tenant_id: str,
        connector_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        offset: int = 0,
        *,
        name_contains: str | None = None,
        reach: Reach | None = None,
    ) -> Page[ConnectorInfo]:
        """One keyset page: the cost is the same on page 1 and page 10,000.

        Pass the previous page's ``next_cursor`` to continue; rows inserted while
        paging never cause a duplicate or a gap. ``name_contains`` keeps the connectors
        whose name holds that text, ignoring case; ``reach`` (a narrowed key's) those it
        covers, filtered in the store's query like the other filters.
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
            name_contains=_name_filter(name_contains),
            **_reach_filters(reach),
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id) if more else None)

    async def get_connector(
        self, connector_id: str, tenant_id: str, *, reach: Reach | None = None
    ) -> ConnectorInfo | None:
        """A connector, or ``None`` if the tenant has none with this id (or ``reach`` does
        not cover it: a narrowed key sees it as another tenant's)."""
        store = await self._store(tenant_id)
        return await self._get(store, tenant_id, connector_id, reach)

    @staticmethod
    async def _get(
        store: Store, tenant_id: str, connector_id: str, reach: Reach | None = None
    ) -> ConnectorInfo | None:
        # An id this store never gives cannot exist: answer without asking the
        # database, which may refuse such text (PostgreSQL and NUL).
        if not is_id(connector_id):
            return None
        info = await store.get_connector(tenant_id, connector_id)
        if info is None or (reach is not None and not reach.covers(info)):
            return None
        return info

    @classmethod
    async def _found(
        cls, store: Store, tenant_id: str, connector_id: str, reach: Reach | None
    ) -> ConnectorInfo:
        """As :meth:`_get`, but a connector that is not there (or not covered) is
        :class:`NotFoundError`."""
        info = await cls._get(store, tenant_id, connector_id, reach)
        if info is None:
            raise NotFoundError("no such connector")
        return info

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
        check_interval: float | None = None,
        failure_threshold: int | None = None,
        reach: Reach | None = None,
    ) -> ConnectorInfo:
        """Validate and store a new connector (status ``registered``); secrets are sealed.

        ``check_interval`` (seconds; ``0`` turns scheduled checks off) and
        ``failure_threshold`` override the server's defaults for this connector.
        With ``idempotency_key``, a retry of the same request within 24 hours returns
        the first result instead of creating a duplicate; the same key with another
        request is refused. A narrowed ``reach`` registers only connectors it will cover
        (metadata matching its selector): a key never makes what it could not see.
        """
        if reach is not None and reach.narrowed:
            _check_would_cover(reach, metadata)
        store = await self._store(tenant_id)
        record: IdempotencyRecord | None = None
        if idempotency_key is not None:
            request: list[Any] = [name, connector_type, endpoint, config, metadata]
            if check_interval is not None or failure_threshold is not None:
                # Only then: the keys recorded before these fields existed still match.
                request += [check_interval, failure_threshold]
            record = idempotency.new_record(idempotency_key, request, self.keyring)
            first = await idempotency.replay(store, tenant_id, record)
            if first is not None:
                return first
        info, secrets = self._build(tenant_id, name, connector_type, endpoint, config, metadata)
        info.check_interval = check_check_interval(check_interval)
        info.failure_threshold = check_failure_threshold(failure_threshold)
        sealed = self.keyring.seal_tree(secrets, tenant_id, info.id) if secrets else None
        audit = self._audit(
            tenant_id, actor, "connector.create", info.id, {"name": info.name, "type": info.connector_type}
        )
        if record is not None:
            record = idempotency.with_response(record, info)
        created = connector_event(EventType.CONNECTOR_CREATED, info)
        try:
            await store.insert_connector(tenant_id, info, sealed, audit, record, events=[created])
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
        self._check_references(definition.secrets, tenant_id)
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
        check_interval: float | Unset | None = UNSET,
        failure_threshold: int | Unset | None = UNSET,
        reach: Reach | None = None,
    ) -> ConnectorInfo | None:
        """Change the fields given; ``None`` if there is no such connector.

        ``endpoint=""`` clears the endpoint. A ``config`` replaces the stored one,
        except that secrets it omits are kept and secrets it sets to ``None`` are
        removed. ``check_interval`` and ``failure_threshold`` change when given;
        ``None`` puts them back on the server's default. With ``expected_version``,
        a stale version raises :class:`VersionConflictError` and changes nothing;
        without it, the last write wins: a concurrent change is retried on the fresh state.
        With ``reach``, a connector it does not cover is ``None``; new metadata that would
        take the connector out of it is refused (a narrowed key cannot give a connector away).
        """
        store = await self._store(tenant_id)
        schedule = _schedule(check_interval, failure_threshold)
        while True:
            current = await self._get(store, tenant_id, connector_id, reach)
            if current is None:
                return None
            if expected_version is not None and current.version != expected_version:
                raise VersionConflictError(
                    f"the connector is at version {current.version}, not {expected_version}",
                    current_version=current.version,
                )
            changes, secret = await self._changes(current, name, endpoint, config, metadata, status)
            if reach is not None and "metadata" in changes:
                _check_stays_covered(reach, current, changes["metadata"])
            changes |= {k: v for k, v in schedule.items() if getattr(current, k) != v}
            if not changes:
                return current
            audit = self._audit(
                tenant_id, actor, "connector.update", connector_id, {"changed": sorted(changes)}
            )
            changes["updated_at"] = utcnow()
            event = connector_event(EventType.CONNECTOR_UPDATED, after_update(current, changes), changes)
            if "check_interval" in changes:
                # A new interval applies now: the scheduler gives the connector a new first
                # due time (with jitter) instead of keeping the one the old interval set.
                changes["next_check_at"] = None
            try:
                return await store.update_connector(
                    tenant_id,
                    connector_id,
                    changes,
                    expected_version=current.version,
                    secret=secret,
                    audit=audit,
                    events=[event],
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
        definition = validate_definition(
            ctype, new_endpoint, new_config, carried=stored, stored=(current.endpoint, current.config)
        )
        self._check_references(definition.secrets, current.tenant_id)
        return definition

    def _check_references(self, secrets: SecretTree, tenant_id: str) -> None:
        """422 for a secret reference the operator's policy does not allow (``docs/secrets.md``)."""
        policy = self.runner.references.policy
        errors = [
            FieldError(("config", *name.split(".")), why)
            for name, ref in references_in(secrets).items()
            if (why := policy.check(ref, tenant_id)) is not None
        ]
        if errors:
            raise ValidationError("a secret reference is not allowed", errors)

    async def delete_connector(
        self,
        connector_id: str,
        tenant_id: str,
        *,
        expected_version: int | None = None,
        actor: str = "library",
        reach: Reach | None = None,
    ) -> bool:
        """Delete a connector with its secrets and history; ``False`` if there is none
        (or ``reach`` does not cover it)."""
        store = await self._store(tenant_id)
        while True:
            # The connector.deleted event carries the connector as it was: read it, and
            # delete that version (a change in between is retried, as an update is).
            current = await self._get(store, tenant_id, connector_id, reach)
            if current is None:
                return False
            if expected_version is not None and current.version != expected_version:
                raise VersionConflictError(
                    f"the connector is at version {current.version}, not {expected_version}",
                    current_version=current.version,
                )
            audit = self._audit(tenant_id, actor, "connector.delete", connector_id, {})
            event = connector_event(EventType.CONNECTOR_DELETED, current)
            try:
                return await store.delete_connector(
                    tenant_id, connector_id, audit, current.version, events=[event]
                )
            except VersionConflictError:
                if expected_version is not None:
                    raise

    # --- tests -----------------------------------------------------------------------

    async def test_connector(
        self, connector_id: str, tenant_id: str, *, actor: str = "library", reach: Reach | None = None
    ) -> TestResult:
        """Really connect: decrypt the secrets, run the type's probe under its timeout,
        record the result, and set ``status`` and ``last_used_at``.

        A failed connection is a ``TestResult`` with ``success=False``; a missing
        connector (or one ``reach`` does not cover) raises :class:`NotFoundError`, a
        deprecated one :class:`InvalidTransitionError`.
        """
        store = await self._store(tenant_id)
        info = await self._found(store, tenant_id, connector_id, reach)
        if info.status == ConnectorStatus.DEPRECATED:
            raise InvalidTransitionError("the connector is deprecated; tests are refused")
        running = asyncio.current_task()
        if running is not None:
            self._testing.add(running)
        try:
            result, capabilities = await self._probe_info(info)
        except asyncio.CancelledError:
            # Cut (a shutdown past its drain bound, a caller gone): say so in the history.
            # The record runs on its own; aclose waits for it before the store closes.
            recording = asyncio.ensure_future(self._record(info, _cancelled_result(info), None, actor))
            self._recording.add(recording)
            recording.add_done_callback(self._recording.discard)
            raise
        finally:
            self._testing.discard(running)
        await self._record(info, result, capabilities, actor)
        return result

    async def _probe_info(self, info: ConnectorInfo) -> tuple[TestResult, list[str] | None]:
        secrets = await self._open_secrets(info)
        result, capabilities = await self.runner.run(
            info.connector_type,
            info.endpoint,
            info.config,
            secrets,
            info.tenant_id,
            {OAUTH_TOKEN: self._token_source(info)},
        )
        result.connector_id = info.id
        return result, capabilities

    def _token_source(self, info: ConnectorInfo) -> Callable[[OAuth2Auth, bool, str | None], Awaitable[str]]:
        """A saved connector's OAuth 2.0 access tokens for its test: the same broker, the same
        stored token as the proxy and the MCP gateway (a test never spends a refresh token on
        its own)."""
        # Where the config holds the grant, so a rotated refresh token is written back there.
        field = "oauth" if info.connector_type == "mcp" else "auth"

        async def token(auth: OAuth2Auth, tls_verify: bool, ca_pem: str | None) -> str:
            return await self.tokens.access_token(
                info.tenant_id,
                info.id,
                auth,
                field=field,
                tls_verify=tls_verify,
                ca_pem=ca_pem,
                mark_refused=False,
            )

        return token

    async def _record(
        self,
        info: ConnectorInfo,
        result: TestResult,
        capabilities: list[str] | None,
        actor: str,
        *,
        schedule: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a test; ``schedule`` (a scheduled check's next due time and cleared lease)
        is written in the same statement, so a check costs one write. A scheduled check is
        recorded in the history only: the audit log keeps what people and keys did
        (docs/health.md), and one event per check would grow it without bound."""
        audit = (
            None
            if schedule is not None
            else self._audit(info.tenant_id, actor, "connector.test", info.id, _test_audit(result))
        )
        # The probe took time: the verdict is applied to the connector as it is inside
        # the store's transaction, so a pause or retirement set during the test stands.
        await self.store.record_test(
            info.tenant_id,
            result,
            audit,
            lambda current: {**changes_after_test(current, result, capabilities), **(schedule or {})},
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
        reach: Reach | None = None,
    ) -> AsyncIterator[TestResult]:
        """Test every matching connector (deprecated ones excluded, and those ``reach``
        does not cover), at most ``concurrency`` at once, yielding results as they
        finish. Each result is recorded exactly as :meth:`test_connector` records it.
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
                page = await self.list_connectors_page(
                    tenant_id, connector_type, status, MAX_LIMIT, cursor, reach=reach
                )
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

    # --- use (the proxy, the MCP gateway, checkout: docs/use.md) ----------------------

    async def use_connector(
        self,
        connector_id: str,
        tenant_id: str,
        *,
        reach: Reach | None = None,
        purpose: str,
        actor: str = "library",
    ) -> InUse:
        """Open a connector for use: its endpoint and config with every secret revealed
        and every secret reference read. ``purpose`` is one of :data:`USE_PURPOSES`.

        Marks ``last_used_at`` (coalesced: at most one write a second per connector) and
        tells :attr:`use_observers`. Only a ``checkout`` is audited (``connector.use``,
        ``actor`` and never a value): proxied requests and gateway calls are too many to
        audit one by one, and are counted in the metrics instead. :class:`NotFoundError`
        if there is no such connector or ``reach`` does not cover it;
        :class:`ConflictError` if it is paused (``disconnected``) or ``deprecated``, and
        for a checkout of an ``http`` or ``mcp`` connector (the proxy and the gateway use
        those); :class:`CheckoutDisabledError` for a checkout the tenant turned off; the
        :class:`ProbeError` of a secret reference that cannot be read.
        """
        store, info = await self._usable(connector_id, tenant_id, reach, purpose)
        secrets = await self.runner.references.resolve(await self._open_secrets(info), tenant_id)
        await self._used(store, info, purpose, actor)
        return InUse(info, info.endpoint, overlay(info.config, secrets))

    async def use_connector_cached(
        self,
        connector_id: str,
        tenant_id: str,
        cache: UseCache[Made],
        *,
        reach: Reach | None = None,
        purpose: str,
        actor: str = "library",
    ) -> tuple[ConnectorInfo, Made]:
        """:meth:`use_connector`, answering the connector and what ``cache.derive`` makes of
        it, made again only when the connector changed (:class:`UseCache`).

        The store reads (reach, status, the sealed secret) and the bookkeeping (last use,
        observers, a checkout's audit) stay on every call: another replica may have
        changed the connector. A hit skips the decryption, the secret references and
        ``derive``. Raises as :meth:`use_connector`, and what ``derive`` raises.
        """
        key = (tenant_id, connector_id)
        try:
            store, info = await self._usable(connector_id, tenant_id, reach, purpose)
        except NotFoundError:
            cache.discard(key)  # deleted (or out of reach): its secrets leave memory now
            raise
        sealed = await self._sealed(info)
        stamp = (info.version, info.created_at, info.updated_at, info.endpoint, info.config, sealed)
        made = cache.get(key, stamp)
        if made is None:
            tree = self._open(info, sealed)
            secrets = await self.runner.references.resolve(tree, tenant_id)
            made = cache.derive(InUse(info, info.endpoint, overlay(info.config, secrets)))
            cache.put(key, stamp, made, self.runner.references.ttl if references_in(tree) else None)
        await self._used(store, info, purpose, actor)
        return info, made

    async def _usable(
        self, connector_id: str, tenant_id: str, reach: Reach | None, purpose: str
    ) -> tuple[Store, ConnectorInfo]:
        """The connector to use, once every rule of :meth:`use_connector` allows it."""
        if purpose not in USE_PURPOSES:
            raise ValidationError(
                "invalid purpose", [FieldError(("purpose",), f"must be one of {', '.join(USE_PURPOSES)}")]
            )
        store = await self._store(tenant_id)
        info = await self._found(store, tenant_id, connector_id, reach)
        if info.status in (ConnectorStatus.DISCONNECTED, ConnectorStatus.DEPRECATED):
            raise ConflictError(
                f"the connector is {info.status}: it is not used until its status is set back"
            )
        if purpose == "checkout":
            if info.connector_type in NOT_CHECKED_OUT:
                raise NotCheckedOutError(
                    f"{info.connector_type} connectors are not checked out: use them through "
                    + ("the proxy" if info.connector_type == "http" else "the MCP gateway")
                )
            if not await store.checkout_enabled(tenant_id):
                raise CheckoutDisabledError("credential checkout is turned off for this tenant")
        return store, info

    async def _used(self, store: Store, info: ConnectorInfo, purpose: str, actor: str) -> None:
        """A use's bookkeeping, once its secrets are read: a checkout's audit, last use, observers."""
        if purpose == "checkout":
            # Written before any value leaves: a checkout the audit missed never happens.
            details = {"purpose": purpose, "connector_type": info.connector_type}
            await store.append_audit(self._audit(info.tenant_id, actor, "connector.use", info.id, details))
        self.usage.mark(info.id)
        for observe in self.use_observers:
            observe(purpose, info.connector_type)

    async def checkout(
        self, connector_id: str, tenant_id: str, *, reach: Reach | None = None, actor: str = "library"
    ) -> Checkout:
        """Check a connector's credentials out: :meth:`use_connector` with ``purpose="checkout"``
        (audited, refused as it says), plus the DSN where the type has one (``docs/use.md``)."""
        used = await self.use_connector(connector_id, tenant_id, reach=reach, purpose="checkout", actor=actor)
        return build_checkout(self._registry, used)

    async def _mark_used(self, connector_ids: Sequence[str], at: datetime) -> int:
        store = await self._store()
        return await store.mark_used(connector_ids, at)

    # --- history and audit -----------------------------------------------------------

    async def history(
        self,
        connector_id: str,
        tenant_id: str,
        limit: int = 50,
        cursor: str | None = None,
        *,
        reach: Reach | None = None,
    ) -> Page[TestResult]:
        """Past test results of a connector, newest first; :class:`NotFoundError` if none
        (or ``reach`` does not cover it)."""
        store = await self._store(tenant_id)
        await self._found(store, tenant_id, connector_id, reach)
        limit = check_limit(limit)
        rows = await store.history(tenant_id, connector_id, limit=limit + 1, before=decode_cursor(cursor))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([r for _, r in rows], encode_cursor(rows[-1][0]) if more else None)

    async def audit(
        self,
        tenant_id: str,
        limit: int = 100,
        cursor: str | None = None,
        connector_id: str | None = None,
        *,
        reach: Reach | None = None,
    ) -> Page[AuditEvent]:
        """The tenant's audit events, newest first. A narrowed ``reach`` reads one covered
        connector's events at a time (``connector_id`` is then required: the tenant's whole
        log names connectors it does not cover); an uncovered id has no events."""
        store = await self._store(tenant_id)
        limit = check_limit(limit)
        if reach is not None and reach.narrowed:
            if connector_id is None:
                raise PermissionDeniedError(
                    "a key narrowed to some connectors reads the audit of one of them: give connector_id"
                )
            if await self._get(store, tenant_id, connector_id, reach) is None:
                return Page([], None)
        if connector_id is not None and not is_id(connector_id):
            return Page([], None)
        events = await store.list_audit(
            tenant_id, limit=limit + 1, before=decode_cursor(cursor), connector_id=connector_id
        )
        more = len(events) > limit
        events = events[:limit]
        return Page(events, encode_cursor(events[-1].id) if more else None)

    # --- secret fingerprints (docs/secrets.md; the logic is in connectord.fingerprints) ---

    async def secret_states(
        self, connector_id: str, tenant_id: str, *, reach: Reach | None = None
    ) -> dict[str, SecretState]:
        """Each stored secret's fingerprint, and its reference when it is one (never a value)."""
        info = await self._found(await self._store(tenant_id), tenant_id, connector_id, reach)
        return fingerprints.stored_states(self.keyring, info, await self._open_secrets(info))

    async def fingerprint_secrets(
        self,
        connector_id: str,
        tenant_id: str,
        values: Mapping[str, str],
        *,
        reach: Reach | None = None,
        actor: str = "library",
    ) -> dict[str, str]:
        """The fingerprints ``values`` would have as this connector's secrets: what
        ``apply --dry-run`` compares with :meth:`secret_states`. Nothing is stored but an
        audit record naming the fields, since a caller can test guesses this way."""
        candidates = fingerprints.check_candidates(values)
        store = await self._store(tenant_id)
        info = await self._found(store, tenant_id, connector_id, reach)
        action, details = "connector.secrets.fingerprint", {"fields": sorted(candidates)}
        await store.append_audit(self._audit(tenant_id, actor, action, info.id, details))
        return fingerprints.candidate_fingerprints(self.keyring, info, candidates)

    # --- helpers ---------------------------------------------------------------------

    async def _open_secrets(self, info: ConnectorInfo) -> SecretTree:
        return self._open(info, await self._sealed(info))

    async def _sealed(self, info: ConnectorInfo) -> Ciphertext | None:
        return await self.store.get_secret(info.tenant_id, info.id) if info.secret_fields else None

    def _open(self, info: ConnectorInfo, sealed: Ciphertext | None) -> SecretTree:
        return self.keyring.open_tree(sealed, info.tenant_id, info.id) if sealed is not None else {}

    @staticmethod
    def _audit(
        tenant_id: str, actor: str, action: str, connector_id: str | None, details: dict[str, Any]
    ) -> AuditEvent:
        return AuditEvent(new_id(), tenant_id, actor, action, connector_id, utcnow(), details)

    # --- webhooks and events (docs/webhooks.md; the logic is in connectord.notify) ---

    async def create_webhook(
        self,
        tenant_id: str,
        url: str,
        events: list[str] | None = None,
        description: str = "",
        enabled: bool = True,
        *,
        actor: str = "library",
    ) -> tuple[WebhookInfo, str]:
        """Register a webhook for ``events`` (every type when ``None``); returns it and its
        signing secret (``whsec_...``), which is shown this once and stored encrypted."""
        store = await self._store(tenant_id)
        info, secret = webhooks.new_webhook(tenant_id, url, events, description, enabled)
        sealed = webhooks.seal_secret(self.keyring, secret, tenant_id, info.id)
        details = {"webhook_id": info.id, "url": info.url, "events": info.events}
        await store.insert_webhook(
            tenant_id, info, sealed, self._audit(tenant_id, actor, "webhook.create", None, details)
        )
        logger.info("webhook created", extra={"tenant_id": tenant_id, "webhook_id": info.id})
        return info, secret

    async def list_webhooks(
        self, tenant_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[WebhookInfo]:
        """A tenant's webhooks in creation order, keyset-paginated."""
        store = await self._store(tenant_id)
        limit = check_limit(limit)
        items = await store.list_webhooks(tenant_id, limit=limit + 1, after=decode_cursor(cursor))
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id) if more else None)

    async def get_webhook(self, webhook_id: str, tenant_id: str) -> WebhookInfo | None:
        """A webhook (never its secret), or ``None`` if the tenant has none with this id."""
        store = await self._store(tenant_id)
        return await store.get_webhook(tenant_id, webhook_id) if is_id(webhook_id) else None

    async def update_webhook(
        self,
        webhook_id: str,
        tenant_id: str,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        *,
        expected_version: int | None = None,
        actor: str = "library",
    ) -> WebhookInfo | None:
        """Change the fields given; ``None`` if there is no such webhook. With
        ``expected_version``, a stale version raises :class:`VersionConflictError`."""
        store = await self._store(tenant_id)
        given = {"url": url, "events": events, "description": description, "enabled": enabled}
        while True:
            current = await self.get_webhook(webhook_id, tenant_id)
            if current is None:
                return None
            if expected_version is not None and current.version != expected_version:
                raise VersionConflictError(
                    f"the webhook is at version {current.version}, not {expected_version}",
                    current_version=current.version,
                )
            changes = webhooks.webhook_changes(current, given)
            if not changes:
                return current
            changes["updated_at"] = utcnow()
            details = {"webhook_id": webhook_id, "changed": sorted(changes)}
            audit = self._audit(tenant_id, actor, "webhook.update", None, details)
            try:
                return await store.update_webhook(
                    tenant_id, webhook_id, changes, expected_version=current.version, audit=audit
                )
            except VersionConflictError:
                if expected_version is not None:
                    raise

    async def delete_webhook(self, webhook_id: str, tenant_id: str, *, actor: str = "library") -> bool:
        """Delete a webhook and its deliveries; ``False`` if there is none."""
        store = await self._store(tenant_id)
        if not is_id(webhook_id):
            return False
        audit = self._audit(tenant_id, actor, "webhook.delete", None, {"webhook_id": webhook_id})
        return await store.delete_webhook(tenant_id, webhook_id, audit)

    async def webhook_deliveries(
        self, webhook_id: str, tenant_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[DeliveryInfo]:
        """A webhook's deliveries, newest first; :class:`NotFoundError` if there is no such webhook."""
        store = await self._store(tenant_id)
        if await self.get_webhook(webhook_id, tenant_id) is None:
            raise NotFoundError("no such webhook")
        limit = check_limit(limit)
        rows = await store.list_deliveries(
            tenant_id, webhook_id, limit=limit + 1, before=decode_cursor(cursor)
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(rows[-1].id) if more else None)

    async def events_after(self, tenant_id: str, after_seq: int, limit: int = 100) -> list[Event]:
        """The tenant's events after ``after_seq`` (an event's ``seq``), oldest first."""
        store = await self._store(tenant_id)
        return await store.events_after(tenant_id, max(after_seq, 0), limit=check_limit(limit))

    async def covered_events(
        self, tenant_id: str, events: Sequence[Event], reach: Reach | None
    ) -> list[Event]:
        """The events of ``events`` a narrowed ``reach`` may see: those of connectors it
        covers, judged by the connector the event carries (a deleted one's too) or, for the
        outage events that carry no metadata, by the connector as it is now. Events of no
        connector are tenant-wide and hidden from narrowed keys."""
        if reach is None or not reach.narrowed:
            return list(events)
        store = await self._store(tenant_id)
        shown: list[Event] = []
        for event in events:
            if event.connector_id is None:
                continue
            carried = event.data.get("connector")
            if isinstance(carried, dict) and isinstance(carried.get("metadata"), dict):
                covered = reach.matches(event.connector_id, carried["metadata"])
            else:
                covered = await self._get(store, tenant_id, event.connector_id, reach) is not None
            if covered:
                shown.append(event)
        return shown

    async def last_event_seq(self, tenant_id: str) -> int:
        """The ``seq`` of the tenant's newest event (0 when there is none): where a live stream starts."""
        store = await self._store(tenant_id)
        return await store.last_event_seq(tenant_id)

    # The delivery worker's calls (connectord.notify.delivery): across tenants, like a scheduler's.

    async def claim_webhook_deliveries(
        self, owner: str, limit: int, lease_seconds: float
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries to ``owner`` for ``lease_seconds``."""
        store = await self._store()
        now = utcnow()
        return await store.claim_deliveries(owner, now, now + timedelta(seconds=lease_seconds), limit)

    def webhook_secret(self, delivery: ClaimedDelivery) -> str:
        """The signing secret of a claimed delivery's webhook (:class:`SecretsError` if it does not open)."""
        return webhooks.open_secret(self.keyring, delivery.secret, delivery.tenant_id, delivery.webhook_id)

    async def finish_webhook_delivery(
        self,
        delivery: ClaimedDelivery,
        owner: str,
        *,
        status: str,
        next_attempt_at: datetime | None = None,
        last_status: int | None = None,
        last_error: str | None = None,
    ) -> bool:
        """Record an attempt's outcome; ``False`` if ``owner`` lost the lease meanwhile."""
        store = await self._store()
        return await store.finish_delivery(
            delivery.id,
            owner,
            status=status,
            at=utcnow(),
            next_attempt_at=next_attempt_at,
            last_status=last_status,
            last_error=last_error,
        )

    async def release_webhook_deliveries(self, owner: str) -> int:
        """Drop ``owner``'s leases (a worker stopping), so another worker sends them at once."""
        store = await self._store()
        return await store.release_deliveries(owner)

    # --- health scheduler and history retention (connectord.health, docs/health.md) ---
    # Across tenants, like the delivery worker's calls: the scheduler acts for every tenant.

    async def claim_due_checks(
        self, owner: str, limit: int, skip_tenants: Sequence[str] = ()
    ) -> list[ClaimedCheck]:
        """Lease up to ``limit`` due checks to ``owner`` (for ``settings.lease_seconds``),
        earliest due first, none of the tenants in ``skip_tenants``."""
        store = await self._store()
        return await store.claim_due_checks(
            owner,
            utcnow(),
            limit=limit,
            lease_seconds=self.settings.lease_seconds,
            default_interval=self.settings.check_interval,
            skip_tenants=skip_tenants,
        )

    async def scheduled_check(
        self, check: ClaimedCheck, owner: str, next_check_at: Callable[[datetime], datetime]
    ) -> TestResult | None:
        """Run a claimed check as :meth:`test_connector` does (actor ``scheduler``); the same
        write sets its next due time, ``next_check_at(now)``, and clears its lease. A paused or
        retired connector is not tested, only rescheduled (``None``)."""
        info = check.connector
        if info.status in (ConnectorStatus.DISCONNECTED, ConnectorStatus.DEPRECATED):
            await self.finish_check(check, owner, next_check_at(utcnow()))
            return None
        result, capabilities = await self._probe_info(info)
        schedule = {"next_check_at": next_check_at(utcnow()), "lease_owner": None, "lease_until": None}
        await self._record(info, result, capabilities, "scheduler", schedule=schedule)
        return result

    async def renew_check(self, check: ClaimedCheck, owner: str) -> ClaimedCheck | None:
        """Extend the lease of a check that waited for a slot; ``None`` if it is no longer ours."""
        store = await self._store()
        until = utcnow() + timedelta(seconds=self.settings.lease_seconds)
        info = check.connector
        if not await store.renew_check(info.tenant_id, info.id, owner, until):
            return None
        return dataclasses.replace(check, lease_until=until)

    async def finish_check(self, check: ClaimedCheck, owner: str, next_check_at: datetime) -> bool:
        """Set a check's next due time and drop its lease without recording a test."""
        store = await self._store()
        return await store.finish_check(check.connector.tenant_id, check.connector.id, owner, next_check_at)

    async def release_checks(self, owner: str | None) -> int:
        """Drop every lease ``owner`` holds (a scheduler stopping; ``None``: every lease, when
        SQLite's one scheduling process starts): the checks stay due, for others."""
        store = await self._store()
        return await store.release_leases(owner)

    async def hold_owner_lock(self, owner: str) -> SessionLock:
        """The session lock that tells the other replicas ``owner`` is alive: when its process
        dies, its leases end at once instead of when they expire."""
        store = await self._store()
        lock = await store.try_session_lock(f"owner:{owner}")
        if lock is None:
            raise ConflictError(f"the scheduler owner id {owner!r} is in use")
        return lock

    async def schedule_checks(self, limit: int) -> int:
        """Give up to ``limit`` new (or resumed) connectors a first due time, spread over their
        interval, and unschedule up to ``limit`` paused, retired or turned-off ones; the number
        scheduled."""
        store = await self._store()
        now, interval = utcnow(), self.settings.check_interval
        await store.unschedule_ineligible(now, default_interval=interval, limit=limit)
        return await store.schedule_unscheduled(now, default_interval=interval, limit=limit)

    async def prune_history_before(self, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` test results older than ``cutoff`` (every tenant)."""
        store = await self._store()
        return await store.prune_history_before(cutoff, limit=limit)

    async def prune_history_beyond(
        self, keep: int, after: str | None, connectors: int, limit: int
    ) -> tuple[int, str | None]:
        """One step of the walk that keeps each connector's newest ``keep`` results:
        the rows deleted and where the next step starts (``None``: the walk is done)."""
        store = await self._store()
        return await store.prune_history_beyond(keep, after=after, connectors=connectors, limit=limit)

    async def run_exclusive(self, name: str, work: Callable[[], Awaitable[int]]) -> int | None:
        """Run ``work`` unless another process on this database runs work of that name
        (then ``None``): retention runs in one replica at a time."""
        store = await self._store()
        lock = await store.try_session_lock(f"work:{name}")
        if lock is None:
            return None
        try:
            return await work()
        finally:
            await lock.release()

    # --- health summary and bulk tests (docs/health.md; the logic is in connectord.health.summary
    # and connectord.bulk) ---

    async def health(self, connector_id: str, tenant_id: str, *, reach: Reach | None = None) -> HealthSummary:
        """The connector's health summary, computed now from its kept history: uptime over
        1 h, 24 h and 7 d, latency p50/p95 over 24 h, checks counted, the last error, the
        status and since when it holds, consecutive failures. :class:`NotFoundError` if
        the tenant has no such connector."""
        # Imported here: connectord.health's package also holds the scheduler, which uses
        # the facade; its pure summary module is all this needs.
        from connectord.health.summary import latency_start, summarize, window_starts

        store = await self._store(tenant_id)
        if reach is not None and reach.narrowed:
            await self._found(store, tenant_id, connector_id, reach)
        now = utcnow()
        facts = None
        if is_id(connector_id):
            facts = await store.health_facts(
                tenant_id, connector_id, windows=window_starts(now), latency_since=latency_start(now)
            )
        if facts is None:
            raise NotFoundError("no such connector")
        return summarize(facts, now)

    async def start_bulk_test(
        self,
        tenant_id: str,
        connector_type: str | None = None,
        status: str | None = None,
        *,
        concurrency: int | None = None,
        actor: str = "library",
        reach: Reach | None = None,
    ) -> BulkTest:
        """Start testing every matching connector in the background (as
        :meth:`test_connectors` does, each result recorded) and return the bulk test at
        once; :meth:`bulk_test` tells its progress and, once done, its summary.

        At most ``concurrency`` tests run at once, never more than
        ``settings.test_concurrency`` (also the default). One bulk test per tenant runs
        in a process at a time: a second is :class:`ConflictError`. With ``reach``, only
        the connectors it covers are counted and tested.
        """
        store = await self._store(tenant_id)
        connector_type, status = _type_filter(connector_type), check_status(status)
        cap = self.settings.test_concurrency
        limit = cap if concurrency is None else min(check_limit(concurrency, "concurrency"), cap)
        return await self._bulk.start(
            store,
            tenant_id,
            connector_type,
            status,
            limit,
            lambda n: self.test_connectors(
                tenant_id, connector_type, status, concurrency=n, actor=actor, reach=reach
            ),
            **_reach_filters(reach),
        )

    async def bulk_test(self, bulk_id: str, tenant_id: str, *, reach: Reach | None = None) -> BulkTest | None:
        """A bulk test of the tenant (started by any replica), or ``None``. A narrowed
        ``reach`` reads only the bulk tests started with that same reach: another's
        summary names connectors it does not cover."""
        store = await self._store(tenant_id)
        if not is_id(bulk_id):
            return None
        narrowed = reach.to_dict() if reach is not None and reach.narrowed else None
        return await self._bulk.get(store, tenant_id, bulk_id, narrowed)

    async def wait_bulk_test(self, bulk_id: str, tenant_id: str) -> BulkTest | None:
        """Wait until a bulk test this process runs is over; then as :meth:`bulk_test`."""
        await self._bulk.wait(bulk_id)
        return await self.bulk_test(bulk_id, tenant_id)

    # --- the web console (docs/console.md; the pages are in connectord.console) ---

    async def recent_tests(self, tenant_id: str, connector_ids: Sequence[str]) -> dict[str, RecentTests]:
        """Checks and successes over the last 24 hours and the newest test's time of each of
        these connectors that has been tested (one query for a page of a list)."""
        store = await self._store(tenant_id)
        ids = [i for i in dict.fromkeys(connector_ids) if is_id(i)][:MAX_LIMIT]
        return await store.recent_tests(tenant_id, ids, utcnow() - timedelta(hours=24))

    async def test_changes(
        self,
        connector_id: str,
        tenant_id: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        actor: str = "library",
        reach: Reach | None = None,
    ) -> TestResult:
        """Test a connector as an update with this endpoint and config would leave it, and
        store nothing but the audit event: an edit's "test before saving". Validated as
        :meth:`update_connector` validates; the stored secrets the config omits are used,
        except where the change sends them to another destination (then they must be
        given again, as for the update). :class:`NotFoundError` if there is no such
        connector, :class:`InvalidTransitionError` if it is deprecated."""
        store = await self._store(tenant_id)
        current = await self._found(store, tenant_id, connector_id, reach)
        if current.status == ConnectorStatus.DEPRECATED:
            raise InvalidTransitionError("the connector is deprecated; tests are refused")
        definition = self._redefine(current, endpoint, config, await self._open_secrets(current))
        result, _ = await self.runner.run(
            current.connector_type, definition.endpoint, definition.public, definition.secrets, tenant_id
        )
        result.connector_id = current.id
        await store.append_audit(
            self._audit(tenant_id, actor, "connector.test_unsaved", current.id, _test_audit(result))
        )
        return result


def _reach_filters(reach: Reach | None) -> dict[str, Any]:
    """The store's ``ids`` and ``metadata`` filters of a narrowed reach (none for a whole tenant)."""
    if reach is None or not reach.narrowed:
        return {}
    return {
        "ids": reach.connector_ids,
        "metadata": dict(reach.selector) if reach.selector is not None else None,
    }


def _check_would_cover(reach: Reach, metadata: Mapping[str, Any] | None) -> None:
    """Refuse a new connector the caller's narrowed reach would not cover: a key of
    connector ids covers no new one; a selector's, one whose metadata matches it."""
    if reach.selector is None:
        raise PermissionDeniedError(
            "this API key is narrowed to some connector ids: it cannot register new connectors"
        )
    if not reach.matches("", metadata or {}):
        raise ValidationError(
            "a key narrowed by a selector registers only connectors its selector covers",
            [FieldError(("metadata",), "must hold every key=value pair of this key's selector")],
        )


def _check_stays_covered(reach: Reach, current: ConnectorInfo, metadata: dict[str, Any]) -> None:
    """Refuse new metadata that would take a connector out of the caller's reach: the
    caller would lose it (and could give it to another key's selector)."""
    if not reach.matches(current.id, metadata):
        raise ValidationError(
            "the new metadata would take the connector out of this key's reach",
            [FieldError(("metadata",), "must keep matching this key's selector")],
        )


def _type_filter(connector_type: str | None) -> str | None:
    if connector_type is not None and (len(connector_type) > 64 or "\x00" in connector_type):
        raise ValidationError(
            "invalid connector_type", [FieldError(("connector_type",), "is not a connector type name")]
        )
    return connector_type


def _name_filter(text: str | None) -> str | None:
    if text is not None and (len(text) > 200 or "\x00" in text):
        raise ValidationError(
            "invalid name filter", [FieldError(("name_contains",), "must be at most 200 characters")]
        )
    return text or None


def _schedule(check_interval: float | Unset | None, failure_threshold: int | Unset | None) -> dict[str, Any]:
    """The scheduling fields an update gives, validated (``None``: the server's default)."""
    given: dict[str, Any] = {}
    if not isinstance(check_interval, Unset):
        given["check_interval"] = check_check_interval(check_interval)
    if not isinstance(failure_threshold, Unset):
        given["failure_threshold"] = check_failure_threshold(failure_threshold)
    return given


def _cancelled_result(info: ConnectorInfo) -> TestResult:
    message = "the test was cut before it finished (the server stopped, or the caller went away)"
    details = {"error_kind": str(ErrorKind.CANCELLED)}
    return TestResult(False, info.id, None, message, details, utcnow())


def _test_audit(result: TestResult) -> dict[str, Any]:
    return {"success": result.success, "error_kind": result.error_kind, "latency_ms": result.latency_ms}


_facade: ConnectorsFacade | None = None


def get_connectors_facade() -> ConnectorsFacade:
    """The process-wide facade, configured from ``CONNECTORD_*`` settings; created on first call."""
    global _facade
    if _facade is None:
        _facade = ConnectorsFacade()
    return _facade
