"""The SQL store: one implementation of :class:`Store` for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from connectord.errors import (
    ConflictError,
    DuplicateNameError,
    NotFoundError,
    StoreError,
    VersionConflictError,
)
from connectord.model import (
    AuditEvent,
    ConnectorInfo,
    ConnectorStatus,
    DeliveryInfo,
    DeliveryStatus,
    ErrorKind,
    Event,
    EventType,
    Reach,
    RecentTests,
    TenantRecord,
    TestResult,
    WebhookInfo,
    new_id,
    utcnow,
)
from connectord.secrets import Ciphertext
from connectord.settings import Settings
from connectord.store.backends import (
    Backend,
    Executor,
    ForeignKeyViolationError,
    PgExecutor,
    PostgresBackend,
    Query,
    Row,
    UniqueViolationError,
    _asyncpg_dsn,
    compile_query,
)
from connectord.store.base import (
    KEEP,
    ApiKeyRecord,
    BulkTestRecord,
    CheckRecord,
    ClaimedCheck,
    ClaimedDelivery,
    HealthFacts,
    IdempotencyRecord,
    Keep,
    SessionLock,
    Store,
)
from connectord.store.oauth_tokens import OAuthTokenStore
from connectord.store.schema import (
    TS,
    api_keys,
    audit_events,
    bulk_tests,
    connector_secrets,
    connectors,
    events,
    idempotency_keys,
    tenants,
    test_results,
    webhook_deliveries,
    webhooks,
)

P = sa.bindparam
_JSON_COLUMNS = ("capabilities", "config", "metadata", "secret_fields")
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(value: Any) -> str:
    """JSON text for a column: orjson (several times faster than json on this hot path),
    falling back to json for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value, default=str)


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


#: The columns a :class:`ConnectorInfo` is made of: the first columns of the table, so
#: that :func:`_connector` reads a whole row (``SELECT *``, ``RETURNING *``) and a row of
#: these alone the same way. The list page and GET by id select only these.
_INFO_COLUMNS = tuple(connectors.c)[:16]
assert [c.name for c in _INFO_COLUMNS] == [
    "id", "tenant_id", "name", "connector_type", "status", "capabilities", "endpoint", "config",
    "metadata", "secret_fields", "version", "created_at", "updated_at", "last_used_at",
    "check_interval", "failure_threshold",
], "connectors' first columns moved: update _INFO_COLUMNS and _connector"  # fmt: skip


#: Decoded lists of names (capabilities, secret fields) by their JSON text: connectors
#: share a handful of them, and copying one costs a third of decoding it again (orjson
#: takes ~400 ns for ``["read","write","query"]``). Emptied when full, so it stays small.
_STR_LISTS: dict[str, tuple[str, ...]] = {}


def _str_list(text: str) -> list[str]:
    cached = _STR_LISTS.get(text)
    if cached is None:
        if len(_STR_LISTS) >= 1024:
            _STR_LISTS.clear()
        cached = _STR_LISTS[text] = tuple(orjson.loads(text))
    return list(cached)


def _connector(row: Row) -> ConnectorInfo:
    """A connector from a row that starts with :data:`_INFO_COLUMNS`.

    By position, not by name: a name lookup in a ``sqlite3.Row`` scans its columns, and
    sixteen of them were two thirds of the decoding time of a list page (bench/api.py).
    """
    # Both drivers' rows (sqlite3.Row, asyncpg.Record) are sequences as well as mappings.
    (
        id_, tenant_id, name, connector_type, status, capabilities, endpoint, config,
        metadata, secret_fields, version, created_at, updated_at, last_used_at,
        check_interval, failure_threshold,
    ) = row[:16]  # type: ignore[index]  # fmt: skip
    # SQLite gives timestamps as ISO 8601 text, PostgreSQL as datetimes.
    if type(created_at) is str:
        created_at = datetime.fromisoformat(created_at)
        updated_at = datetime.fromisoformat(updated_at) if updated_at else None
        last_used_at = datetime.fromisoformat(last_used_at) if last_used_at else None
    return ConnectorInfo(
        id_,
        name,
        connector_type,
        status,
        _str_list(capabilities),
        endpoint,
        tenant_id,
        created_at,
        updated_at,
        last_used_at,
        orjson.loads(config),
        orjson.loads(metadata),
        _str_list(secret_fields),
        version,
        check_interval,
        failure_threshold,
    )


def _connector_params(info: ConnectorInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "tenant_id": info.tenant_id,
        "name": info.name,
        "connector_type": info.connector_type,
        "status": info.status,
        "capabilities": _dumps(info.capabilities),
        "endpoint": info.endpoint,
        "config": _dumps(info.config),
        "metadata": _dumps(info.metadata),
        "secret_fields": _dumps(info.secret_fields),
        "version": info.version,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "last_used_at": info.last_used_at,
        "check_interval": info.check_interval,
        "failure_threshold": info.failure_threshold,
    }


def _audit(row: Row) -> AuditEvent:
    at = _dt(row["at"])
    assert at is not None
    return AuditEvent(
        id=row["id"],
        tenant_id=row["tenant_id"],
        actor=row["actor"],
        action=row["action"],
        connector_id=row["connector_id"],
        at=at,
        details=orjson.loads(row["details"]),
    )


def _audit_params(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "tenant_id": event.tenant_id,
        "actor": event.actor,
        "action": event.action,
        "connector_id": event.connector_id,
        "at": event.at,
        "details": _dumps(event.details),
    }


def _outage_changes(row: Row, result: TestResult, default_threshold: int) -> dict[str, Any]:
    """The failure count after a test and, where it starts or ends an outage, ``down_since``:
    set by the ``failure_threshold``-th failure in a row, cleared by the next success."""
    if result.error_kind == ErrorKind.CANCELLED:
        return {}  # a cut test says nothing of the connector
    failures = 0 if result.success else int(row["consecutive_failures"] or 0) + 1
    changes: dict[str, Any] = {"consecutive_failures": failures}
    threshold = row["failure_threshold"] or default_threshold
    if result.success and row["down_since"] is not None:
        changes["down_since"] = None
    elif not result.success and row["down_since"] is None and failures >= threshold:
        changes["down_since"] = result.tested_at
    return changes


def _outage_event(row: Row, result: TestResult, changes: Mapping[str, Any]) -> Event:
    """``connector.down`` or ``connector.recovered`` for the outage change in ``changes``."""
    down = changes["down_since"] is not None
    data: dict[str, Any] = {
        "connector": {"id": row["id"], "name": row["name"], "connector_type": row["connector_type"]},
        "status": str(changes.get("status", row["status"])),
        "consecutive_failures": changes["consecutive_failures"],
        "tested_at": result.tested_at.isoformat() if result.tested_at else None,
    }
    if down:
        data["error_kind"] = result.error_kind
        data["error"] = result.error
    else:
        data["down_since"] = _iso_or_none(_dt(row["down_since"]))
    kind = EventType.CONNECTOR_DOWN if down else EventType.CONNECTOR_RECOVERED
    return Event(kind, row["tenant_id"], row["id"], data, at=result.tested_at or utcnow())


def _iso_or_none(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _key(row: Row) -> ApiKeyRecord:
    created = _dt(row["created_at"])
    assert created is not None
    ids, selector = row["connector_ids"], row["selector"]
    reach = Reach(
        frozenset(orjson.loads(ids)) if ids is not None else None,
        tuple(sorted(orjson.loads(selector).items())) if selector is not None else None,
    )
    return ApiKeyRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        key_hash=row["key_hash"],
        scopes=tuple(orjson.loads(row["scopes"])),
        created_at=created,
        revoked_at=_dt(row["revoked_at"]),
        reach=reach,
    )


def _tenant(row: Row) -> TenantRecord:
    return TenantRecord(
        row["id"], row["name"], _dt(row["created_at"]) or datetime.min, bool(row["checkout_enabled"])
    )


def _reach_condition(
    dialect: str, ids: Collection[str] | None, metadata: Mapping[str, str] | None
) -> sa.ColumnElement[bool]:
    """The SQL of a narrowed key's reach: ``id`` among ``:reach_ids`` (a JSON list) or the
    metadata holding every pair of ``:reach_meta`` (a JSON object of strings), either when
    both are given. JSON parameters keep one compiled statement whatever their length."""
    conds: list[sa.TextClause] = []
    if dialect == "postgresql":
        if ids is not None:
            conds.append(
                sa.text("connectors.id IN (SELECT jsonb_array_elements_text(CAST(:reach_ids AS JSONB)))")
            )
        if metadata is not None:
            # Containment of an object of strings: each key holds exactly that string.
            conds.append(sa.text("CAST(connectors.metadata AS JSONB) @> CAST(:reach_meta AS JSONB)"))
    else:
        if ids is not None:
            conds.append(sa.text("connectors.id IN (SELECT value FROM json_each(:reach_ids))"))
        if metadata is not None:
            # No pair of the selector without a text value equal to it in the metadata; json_each
            # compares keys as they are (a JSON path could not name every key).
            conds.append(
                sa.text(
                    "NOT EXISTS (SELECT 1 FROM json_each(:reach_meta) AS s WHERE NOT EXISTS ("
                    "SELECT 1 FROM json_each(connectors.metadata) AS m "
                    "WHERE m.key = s.key AND m.type = 'text' AND m.value = s.value))"
                )
            )
    return sa.or_(*conds)


def _reach_params(ids: Collection[str] | None, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if ids is not None:
        params["reach_ids"] = _dumps(sorted(ids))
    if metadata is not None:
        params["reach_meta"] = _dumps(dict(metadata))
    return params


def _reach_key(ids: Collection[str] | None, metadata: Mapping[str, str] | None) -> str:
    """The part of a cached statement's key that says which reach filters it has."""
    if ids is None and metadata is None:
        return ""
    return f":reach{ids is not None:d}{metadata is not None:d}"


def _insert(table: sa.Table, names: Collection[str] | None = None) -> sa.Insert:
    """``INSERT`` of every column (or of ``names``; the others take their defaults)."""
    return table.insert().values(
        {c.name: P(c.name) for c in table.columns if names is None or c.name in names}
    )


def _where(table: sa.Table, *names: str) -> list[sa.ColumnElement[bool]]:
    return [table.c[n] == P(n) for n in names]


class SqlStore(OAuthTokenStore, Store):
    """Every store method, written once over a :class:`Backend`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._queries: dict[str, Query] = {}

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    def _q(self, key: str, build: Callable[[], sa.sql.ClauseElement]) -> Query:
        q = self._queries.get(key)
        if q is None:
            q = self._queries[key] = compile_query(build(), self.backend.dialect)
        return q

    # --- tenants and keys ------------------------------------------------------------

    async def create_tenant(self, tenant: TenantRecord, audit: AuditEvent) -> None:
        ins = self._q("tenant.insert", lambda: _insert(tenants))
        params = {
            "id": tenant.id,
            "name": tenant.name,
            "created_at": tenant.created_at,
            "checkout_enabled": tenant.checkout_enabled,
        }

        async def op(ex: Executor) -> None:
            try:
                await ex.run(ins, params)
            except UniqueViolationError:
                raise DuplicateNameError(f"a tenant named {tenant.name!r} exists") from None
            await self._add_audit(ex, audit)

        await self.backend.write(op)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        q = self._q("tenant.get", lambda: sa.select(tenants).where(*_where(tenants, "id")))
        row = await self.backend.read(lambda ex: ex.one(q, {"id": tenant_id}))
        return _tenant(row) if row is not None else None

    async def list_tenants(self) -> list[TenantRecord]:
        q = self._q("tenant.list", lambda: sa.select(tenants).order_by(tenants.c.id))
        rows = await self.backend.read(lambda ex: ex.all(q, {}))
        return [_tenant(r) for r in rows]

    async def set_checkout(self, tenant_id: str, enabled: bool, audit: AuditEvent) -> bool:
        q = self._q(
            "tenant.checkout",
            lambda: tenants.update().where(*_where(tenants, "id")).values(checkout_enabled=P("enabled")),
        )

        async def op(ex: Executor) -> bool:
            if await ex.run(q, {"id": tenant_id, "enabled": enabled}) == 0:
                return False
            await self._add_audit(ex, audit)
            return True

        return await self.backend.write(op)

    async def checkout_enabled(self, tenant_id: str) -> bool:
        q = self._q(
            "tenant.checkout_enabled",
            lambda: sa.select(tenants.c.checkout_enabled).where(*_where(tenants, "id")),
        )
        row = await self.backend.read(lambda ex: ex.one(q, {"id": tenant_id}))
        return row is None or bool(row["checkout_enabled"])

    async def create_api_key(self, tenant_id: str, key: ApiKeyRecord, audit: AuditEvent) -> None:
        ins = self._q("key.insert", lambda: _insert(api_keys))
        params = {
            "id": key.id,
            "tenant_id": tenant_id,
            "name": key.name,
            "key_hash": key.key_hash,
            "scopes": _dumps(list(key.scopes)),
            "created_at": key.created_at,
            "revoked_at": None,
            "connector_ids": (
                _dumps(sorted(key.reach.connector_ids)) if key.reach.connector_ids is not None else None
            ),
            "selector": _dumps(dict(key.reach.selector)) if key.reach.selector is not None else None,
        }

        async def op(ex: Executor) -> None:
            await ex.run(ins, params)
            await self._add_audit(ex, audit)

        await self.backend.write(op)

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        q = self._q(
            "key.find",
            lambda: sa.select(api_keys).where(*_where(api_keys, "key_hash"), api_keys.c.revoked_at.is_(None)),
        )
        row = await self.backend.read(lambda ex: ex.one(q, {"key_hash": key_hash}))
        return _key(row) if row is not None else None

    async def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        q = self._q(
            "key.list",
            lambda: sa.select(api_keys).where(*_where(api_keys, "tenant_id")).order_by(api_keys.c.id),
        )
        rows = await self.backend.read(lambda ex: ex.all(q, {"tenant_id": tenant_id}))
        return [_key(r) for r in rows]

    async def revoke_api_key(self, tenant_id: str, key_id: str, at: datetime, audit: AuditEvent) -> bool:
        q = self._q(
            "key.revoke",
            lambda: (
                api_keys.update()
                .where(*_where(api_keys, "tenant_id", "id"), api_keys.c.revoked_at.is_(None))
                .values(revoked_at=P("at"))
            ),
        )

        async def op(ex: Executor) -> bool:
            if await ex.run(q, {"tenant_id": tenant_id, "id": key_id, "at": at}) == 0:
                return False
            await self._add_audit(ex, audit)
            return True

        return await self.backend.write(op)

    # --- connectors ------------------------------------------------------------------

    async def insert_connector(
        self,
        tenant_id: str,
        info: ConnectorInfo,
        secret: Ciphertext | None,
        audit: AuditEvent,
        idempotency: IdempotencyRecord | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        assert info.tenant_id == tenant_id
        params = _connector_params(info)
        ins = self._q("connector.insert", lambda: _insert(connectors, params))

        async def op(ex: Executor) -> None:
            if idempotency is not None:
                await self._add_idempotency(ex, tenant_id, idempotency)
            try:
                await ex.run(ins, params)
            except UniqueViolationError:
                raise DuplicateNameError(f"a connector named {info.name!r} exists in this tenant") from None
            except ForeignKeyViolationError:
                raise NotFoundError("no such tenant") from None
            if secret is not None:
                await self._put_secret(ex, tenant_id, info.id, secret, insert=True)
            await self._add_audit(ex, audit)
            await self._add_events(ex, events)

        await self.backend.write(op)

    async def _add_idempotency(self, ex: Executor, tenant_id: str, record: IdempotencyRecord) -> None:
        ins = self._q("idempotency.insert", lambda: _insert(idempotency_keys))
        params = {
            "tenant_id": tenant_id,
            "key": record.key,
            "request_hash": record.request_hash,
            "response": record.response,
            "created_at": record.created_at,
        }
        try:
            await ex.run(ins, params)
        except UniqueViolationError:
            raise ConflictError("a request with this Idempotency-Key was already processed") from None

    async def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        q = self._q(
            "idempotency.get",
            lambda: sa.select(idempotency_keys).where(*_where(idempotency_keys, "tenant_id", "key")),
        )
        row = await self.backend.read(lambda ex: ex.one(q, {"tenant_id": tenant_id, "key": key}))
        if row is None:
            return None
        return IdempotencyRecord(
            row["key"], row["request_hash"], row["response"], _dt(row["created_at"]) or datetime.min
        )

    async def delete_idempotency(self, tenant_id: str, key: str) -> None:
        q = self._q(
            "idempotency.delete",
            lambda: idempotency_keys.delete().where(*_where(idempotency_keys, "tenant_id", "key")),
        )
        await self.backend.write(lambda ex: ex.run(q, {"tenant_id": tenant_id, "key": key}))

    async def get_connector(self, tenant_id: str, connector_id: str) -> ConnectorInfo | None:
        q = self._q(
            "connector.read",
            lambda: sa.select(*_INFO_COLUMNS).where(*_where(connectors, "tenant_id", "id")),
        )
        row = await self.backend.read(lambda ex: ex.one(q, {"tenant_id": tenant_id, "id": connector_id}))
        return _connector(row) if row is not None else None

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
        key = f"connector.list:{connector_type is not None}:{status is not None}:{after is not None}"
        key += (":name" if name_contains is not None else "") + _reach_key(ids, metadata)
        narrowed = ids is not None or metadata is not None

        def build() -> sa.Select[Any]:
            conds = _where(connectors, "tenant_id")
            if connector_type is not None:
                conds.append(connectors.c.connector_type == P("connector_type"))
            if status is not None:
                conds.append(connectors.c.status == P("status"))
            if after is not None:
                conds.append(connectors.c.id > P("after"))
            if name_contains is not None:
                conds.append(connectors.c.name.ilike(P("name_pattern"), escape="\\"))
            if narrowed:
                conds.append(_reach_condition(self.backend.dialect.name, ids, metadata))
            return (
                sa.select(*_INFO_COLUMNS)
                .where(*conds)
                .order_by(connectors.c.id)
                .limit(P("limit"))
                .offset(P("offset"))
            )

        q = self._q(key, build)
        params = {
            "tenant_id": tenant_id,
            "connector_type": connector_type,
            "status": status,
            "after": after,
            "limit": limit,
            "offset": offset,
        }
        if name_contains is not None:
            params["name_pattern"] = f"%{_like_escaped(name_contains)}%"
        params |= _reach_params(ids, metadata)
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return [_connector(r) for r in rows]

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
        async def op(ex: Executor) -> ConnectorInfo | None:
            try:
                info = await self._apply_changes(ex, tenant_id, connector_id, changes, expected_version)
            except UniqueViolationError:
                raise DuplicateNameError(
                    f"a connector named {changes.get('name')!r} exists in this tenant"
                ) from None
            if info is None:
                return None
            if secret is None:
                await self._delete_secret(ex, tenant_id, connector_id)
            elif isinstance(secret, Ciphertext):
                await self._put_secret(ex, tenant_id, connector_id, secret, insert=False)
            await self._add_audit(ex, audit)
            await self._add_events(ex, events)
            return info

        return await self.backend.write(op)

    def _update(self, cols: list[str], guarded: bool, returning: bool) -> Query:
        """``UPDATE connectors SET <cols>, version = version + 1`` for one connector."""

        def build() -> sa.Update:
            conds = _where(connectors, "tenant_id", "id")
            if guarded:
                conds.append(connectors.c.version == P("expected_version"))
            values: dict[str, Any] = {c: P(f"new_{c}") for c in cols}
            values["version"] = connectors.c.version + 1
            stmt = connectors.update().where(*conds).values(values)
            return stmt.returning(*connectors.c) if returning else stmt

        return self._q(f"connector.update:{','.join(cols)}:{guarded}:{returning}", build)

    @staticmethod
    def _update_params(
        tenant_id: str, connector_id: str, changes: Mapping[str, Any], expected_version: int | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"tenant_id": tenant_id, "id": connector_id}
        if expected_version is not None:
            params["expected_version"] = expected_version
        for col, value in changes.items():
            params[f"new_{col}"] = _dumps(value) if col in _JSON_COLUMNS else value
        return params

    async def _apply_changes(
        self,
        ex: Executor,
        tenant_id: str,
        connector_id: str,
        changes: Mapping[str, Any],
        expected_version: int | None,
    ) -> ConnectorInfo | None:
        """Conditional UPDATE ... RETURNING: atomic on both backends, no read-modify-write."""
        q = self._update(sorted(changes), expected_version is not None, returning=True)
        params = self._update_params(tenant_id, connector_id, changes, expected_version)
        row = await ex.one(q, params)
        if row is not None:
            return _connector(row)
        get = self._q(
            "connector.version",
            lambda: sa.select(connectors.c.version).where(*_where(connectors, "tenant_id", "id")),
        )
        current = await ex.one(get, {"tenant_id": tenant_id, "id": connector_id})
        if current is None:
            return None
        raise VersionConflictError(
            f"the connector is at version {current['version']}, not {expected_version}",
            current_version=current["version"],
        )

    async def delete_connector(
        self,
        tenant_id: str,
        connector_id: str,
        audit: AuditEvent,
        expected_version: int | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        guarded = expected_version is not None

        def build() -> sa.Delete:
            conds = _where(connectors, "tenant_id", "id")
            if guarded:
                conds.append(connectors.c.version == P("expected_version"))
            return connectors.delete().where(*conds)

        q = self._q(f"connector.delete:{guarded}", build)
        exists = self._q(
            "connector.version",
            lambda: sa.select(connectors.c.version).where(*_where(connectors, "tenant_id", "id")),
        )
        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "id": connector_id,
            "expected_version": expected_version,
        }

        async def op(ex: Executor) -> bool:
            # Children first: the foreign keys cascade, but deleting them by tenant keeps
            # the statement scoped to the tenant even where cascades are off.
            await self._delete_secret(ex, tenant_id, connector_id)
            await ex.run(
                self._q(
                    "history.delete",
                    lambda: test_results.delete().where(*_where(test_results, "tenant_id", "connector_id")),
                ),
                {"tenant_id": tenant_id, "connector_id": connector_id},
            )
            if await ex.run(q, params) == 0:
                current = await ex.one(exists, params)
                if current is None:
                    return False
                raise VersionConflictError(
                    f"the connector is at version {current['version']}, not {expected_version}",
                    current_version=current["version"],
                )
            await self._add_audit(ex, audit)
            await self._add_events(ex, events)
            return True

        return await self.backend.write(op)

    async def get_secret(self, tenant_id: str, connector_id: str) -> Ciphertext | None:
        q = self._q(
            "secret.get",
            lambda: sa.select(connector_secrets).where(
                *_where(connector_secrets, "tenant_id", "connector_id")
            ),
        )
        row = await self.backend.read(
            lambda ex: ex.one(q, {"tenant_id": tenant_id, "connector_id": connector_id})
        )
        return Ciphertext(row["key_id"], bytes(row["ciphertext"])) if row is not None else None

    async def mark_used(self, connector_ids: Sequence[str], at: datetime) -> int:
        if not connector_ids:
            return 0

        def build() -> sa.Update:
            newer = sa.or_(connectors.c.last_used_at.is_(None), connectors.c.last_used_at < P("at", type_=TS))
            return (
                connectors.update()
                .where(_reach_condition(self.backend.dialect.name, connector_ids, None), newer)
                .values(last_used_at=P("used_at", type_=TS))
            )

        q = self._q("connector.mark_used", build)
        params = {"at": at, "used_at": at, **_reach_params(connector_ids, None)}
        return await self.backend.write(lambda ex: ex.run(q, params))

    async def _put_secret(
        self, ex: Executor, tenant_id: str, connector_id: str, secret: Ciphertext, *, insert: bool
    ) -> None:
        if not insert:
            await self._delete_secret(ex, tenant_id, connector_id)
        ins = self._q("secret.insert", lambda: _insert(connector_secrets))
        await ex.run(
            ins,
            {
                "connector_id": connector_id,
                "tenant_id": tenant_id,
                "key_id": secret.key_id,
                "ciphertext": secret.data,
            },
        )

    async def _delete_secret(self, ex: Executor, tenant_id: str, connector_id: str) -> None:
        q = self._q(
            "secret.delete",
            lambda: connector_secrets.delete().where(*_where(connector_secrets, "tenant_id", "connector_id")),
        )
        await ex.run(q, {"tenant_id": tenant_id, "connector_id": connector_id})

    # --- tests and audit -------------------------------------------------------------

    async def record_test(
        self,
        tenant_id: str,
        result: TestResult,
        audit: AuditEvent | None,
        changes_for: Callable[[ConnectorInfo], dict[str, Any]],
        *,
        failure_threshold: int = 3,
    ) -> bool:
        ins = self._q("history.insert", lambda: _insert(test_results))
        lock = self._q(
            "connector.lock",
            lambda: sa.select(connectors).where(*_where(connectors, "tenant_id", "id")).with_for_update(),
        )
        params = {
            "id": audit.id if audit is not None else new_id(),
            "tenant_id": tenant_id,
            "connector_id": result.connector_id,
            "success": result.success,
            "latency_ms": result.latency_ms,
            "error": result.error,
            "error_kind": result.error_kind,
            "details": _dumps(result.details),
            "tested_at": result.tested_at,
        }

        async def op(ex: Executor) -> bool:
            row = await ex.one(lock, {"tenant_id": tenant_id, "id": result.connector_id})
            if row is None:
                return False  # deleted while the test ran: nothing to record
            changes = changes_for(_connector(row))
            outage = _outage_changes(row, result, failure_threshold)
            changes.update(outage)
            update = self._update(sorted(changes), guarded=False, returning=False)
            await ex.run(update, self._update_params(tenant_id, result.connector_id, changes, None))
            await ex.run(ins, params)
            if audit is not None:
                await self._add_audit(ex, audit)
            if "down_since" in outage:
                await self._add_events(ex, [_outage_event(row, result, changes)])
            return True

        return await self.backend.write(op)

    async def history(
        self, tenant_id: str, connector_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[tuple[str, TestResult]]:
        def build() -> sa.Select[Any]:
            conds = _where(test_results, "tenant_id", "connector_id")
            if before is not None:
                conds.append(test_results.c.id < P("before"))
            return sa.select(test_results).where(*conds).order_by(test_results.c.id.desc()).limit(P("limit"))

        q = self._q(f"history.list:{before is not None}", build)
        params = {"tenant_id": tenant_id, "connector_id": connector_id, "before": before, "limit": limit}
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return [
            (
                r["id"],
                TestResult(
                    success=bool(r["success"]),
                    connector_id=r["connector_id"],
                    latency_ms=r["latency_ms"],
                    error=r["error"],
                    details=orjson.loads(r["details"]),
                    tested_at=_dt(r["tested_at"]),
                ),
            )
            for r in rows
        ]

    async def _add_events(self, ex: Executor, new: Sequence[Event]) -> None:
        """Append events to the outbox, in the caller's transaction, with a pending
        delivery for every enabled webhook of the tenant that takes their type."""
        ins = self._q(
            "event.insert",
            lambda: (
                events.insert()
                .values({c.name: P(c.name) for c in events.columns if c.name != "seq"})
                .returning(events.c.seq)
            ),
        )
        hooks = self._q(
            "webhook.enabled",
            lambda: sa.select(webhooks.c.id, webhooks.c.events).where(
                webhooks.c.tenant_id == P("tenant_id"), webhooks.c.enabled.is_(True)
            ),
        )
        add = self._q("delivery.insert", lambda: _insert(webhook_deliveries))
        subscribed: dict[str, list[tuple[str, list[str]]]] = {}
        for event in new:
            params = {
                "id": event.id,
                "tenant_id": event.tenant_id,
                "type": str(event.type),
                "connector_id": event.connector_id,
                "at": event.at,
                "payload": _dumps(event.payload()),
            }
            row = await ex.one(ins, params)
            assert row is not None
            if event.tenant_id not in subscribed:
                found = await ex.all(hooks, {"tenant_id": event.tenant_id})
                subscribed[event.tenant_id] = [(h["id"], orjson.loads(h["events"])) for h in found]
            for webhook_id, types in subscribed[event.tenant_id]:
                if str(event.type) not in types:
                    continue
                await ex.run(
                    add,
                    {
                        "id": new_id(),
                        "tenant_id": event.tenant_id,
                        "webhook_id": webhook_id,
                        "event_seq": row["seq"],
                        "event_id": event.id,
                        "event_type": str(event.type),
                        "connector_id": event.connector_id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": event.at,
                        "lease_owner": None,
                        "lease_until": None,
                        "last_status": None,
                        "last_error": None,
                        "created_at": event.at,
                        "delivered_at": None,
                    },
                )

    async def _add_audit(self, ex: Executor, event: AuditEvent) -> None:
        await ex.run(self._q("audit.insert", lambda: _insert(audit_events)), _audit_params(event))

    async def append_audit(self, audit: AuditEvent) -> None:
        await self.backend.write(lambda ex: self._add_audit(ex, audit))

    async def list_audit(
        self,
        tenant_id: str,
        *,
        limit: int = 100,
        before: str | None = None,
        connector_id: str | None = None,
    ) -> list[AuditEvent]:
        def build() -> sa.Select[Any]:
            conds = _where(audit_events, "tenant_id")
            if before is not None:
                conds.append(audit_events.c.id < P("before"))
            if connector_id is not None:
                conds.append(audit_events.c.connector_id == P("connector_id"))
            return sa.select(audit_events).where(*conds).order_by(audit_events.c.id.desc()).limit(P("limit"))

        q = self._q(f"audit.list:{before is not None}:{connector_id is not None}", build)
        params = {"tenant_id": tenant_id, "before": before, "connector_id": connector_id, "limit": limit}
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return [_audit(r) for r in rows]

    # --- rotation --------------------------------------------------------------------

    async def list_secrets(self, tenant_id: str) -> list[tuple[str, Ciphertext]]:
        q = self._q(
            "secret.list",
            lambda: sa.select(connector_secrets).where(*_where(connector_secrets, "tenant_id")),
        )
        rows = await self.backend.read(lambda ex: ex.all(q, {"tenant_id": tenant_id}))
        return [(r["connector_id"], Ciphertext(r["key_id"], bytes(r["ciphertext"]))) for r in rows]

    async def sealed_tenant_ids(self) -> list[str]:
        q = self._q(
            "secret.tenants",
            lambda: sa.union(
                sa.select(connector_secrets.c.tenant_id), sa.select(webhooks.c.tenant_id)
            ).order_by("tenant_id"),
        )
        rows = await self.backend.read(lambda ex: ex.all(q, {}))
        return [r["tenant_id"] for r in rows]

    async def replace_secret(
        self, tenant_id: str, connector_id: str, old: Ciphertext, new: Ciphertext
    ) -> bool:
        q = self._q(
            "secret.swap",
            lambda: (
                connector_secrets.update()
                .where(
                    *_where(connector_secrets, "tenant_id", "connector_id", "key_id"),
                    connector_secrets.c.ciphertext == P("old"),
                )
                .values(key_id=P("new_key_id"), ciphertext=P("new"))
            ),
        )
        params = {
            "tenant_id": tenant_id,
            "connector_id": connector_id,
            "key_id": old.key_id,
            "old": old.data,
            "new_key_id": new.key_id,
            "new": new.data,
        }
        return await self.backend.write(lambda ex: ex.run(q, params)) == 1

    async def secret_key_usage(self) -> dict[str, int]:
        q = self._q(
            "secret.usage",
            lambda: sa.select(connector_secrets.c.key_id, sa.func.count().label("n")).group_by(
                connector_secrets.c.key_id
            ),
        )
        # Webhooks' signing secrets are sealed by the same ring: a key they use is in use.
        hooks = self._q(
            "webhook.secret.usage",
            lambda: sa.select(webhooks.c.key_id, sa.func.count().label("n")).group_by(webhooks.c.key_id),
        )

        async def count(ex: Executor) -> dict[str, int]:
            usage: dict[str, int] = {}
            for row in [*await ex.all(q, {}), *await ex.all(hooks, {})]:
                usage[row["key_id"]] = usage.get(row["key_id"], 0) + int(row["n"])
            return usage

        return await self.backend.read(count)

    # --- operations ---------------------------------------------------------------------

    async def schema_revision(self) -> str | None:
        q = self._q("alembic.version", lambda: sa.text("SELECT version_num FROM alembic_version"))
        row = await self.backend.read(lambda ex: ex.one(q, {}))
        return None if row is None else str(row["version_num"])

    # --- webhooks, deliveries and events (docs/webhooks.md) -----------------------------

    async def insert_webhook(
        self, tenant_id: str, info: WebhookInfo, secret: Ciphertext, audit: AuditEvent
    ) -> None:
        assert info.tenant_id == tenant_id
        ins = self._q("webhook.insert", lambda: _insert(webhooks))
        params = {**_webhook_params(info), "key_id": secret.key_id, "secret": secret.data}

        async def op(ex: Executor) -> None:
            await ex.run(ins, params)
            await self._add_audit(ex, audit)

        await self.backend.write(op)

    async def get_webhook(self, tenant_id: str, webhook_id: str) -> WebhookInfo | None:
        q = self._q("webhook.get", lambda: sa.select(webhooks).where(*_where(webhooks, "tenant_id", "id")))
        row = await self.backend.read(lambda ex: ex.one(q, {"tenant_id": tenant_id, "id": webhook_id}))
        return _webhook(row) if row is not None else None

    async def list_webhooks(
        self, tenant_id: str, *, limit: int = 100, after: str | None = None
    ) -> list[WebhookInfo]:
        def build() -> sa.Select[Any]:
            conds = _where(webhooks, "tenant_id")
            if after is not None:
                conds.append(webhooks.c.id > P("after"))
            return sa.select(webhooks).where(*conds).order_by(webhooks.c.id).limit(P("limit"))

        q = self._q(f"webhook.list:{after is not None}", build)
        params = {"tenant_id": tenant_id, "after": after, "limit": limit}
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return [_webhook(r) for r in rows]

    async def update_webhook(
        self,
        tenant_id: str,
        webhook_id: str,
        changes: dict[str, object],
        *,
        expected_version: int,
        audit: AuditEvent,
    ) -> WebhookInfo | None:
        cols = sorted(changes)

        def build() -> sa.Update:
            values: dict[str, Any] = {c: P(f"new_{c}") for c in cols}
            values["version"] = webhooks.c.version + 1
            return (
                webhooks.update()
                .where(*_where(webhooks, "tenant_id", "id", "version"))
                .values(values)
                .returning(*webhooks.c)
            )

        q = self._q(f"webhook.update:{','.join(cols)}", build)
        current = self._q(
            "webhook.version",
            lambda: sa.select(webhooks.c.version).where(*_where(webhooks, "tenant_id", "id")),
        )
        params: dict[str, Any] = {"tenant_id": tenant_id, "id": webhook_id, "version": expected_version}
        for col, value in changes.items():
            params[f"new_{col}"] = _dumps(value) if col == "events" else value

        async def op(ex: Executor) -> WebhookInfo | None:
            row = await ex.one(q, params)
            if row is None:
                found = await ex.one(current, params)
                if found is None:
                    return None
                raise VersionConflictError(
                    f"the webhook is at version {found['version']}, not {expected_version}",
                    current_version=found["version"],
                )
            await self._add_audit(ex, audit)
            return _webhook(row)

        return await self.backend.write(op)

    async def delete_webhook(self, tenant_id: str, webhook_id: str, audit: AuditEvent) -> bool:
        drop_deliveries = self._q(
            "delivery.delete_for_webhook",
            lambda: webhook_deliveries.delete().where(*_where(webhook_deliveries, "tenant_id", "webhook_id")),
        )
        drop = self._q(
            "webhook.delete", lambda: webhooks.delete().where(*_where(webhooks, "tenant_id", "id"))
        )

        async def op(ex: Executor) -> bool:
            # The deliveries by tenant first: the statement stays scoped to the tenant
            # even where the foreign key's cascade is off.
            await ex.run(drop_deliveries, {"tenant_id": tenant_id, "webhook_id": webhook_id})
            if await ex.run(drop, {"tenant_id": tenant_id, "id": webhook_id}) == 0:
                return False
            await self._add_audit(ex, audit)
            return True

        return await self.backend.write(op)

    async def list_deliveries(
        self, tenant_id: str, webhook_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[DeliveryInfo]:
        d = webhook_deliveries

        def build() -> sa.Select[Any]:
            conds = _where(d, "tenant_id", "webhook_id")
            if before is not None:
                conds.append(d.c.id < P("before"))
            return sa.select(d).where(*conds).order_by(d.c.id.desc()).limit(P("limit"))

        q = self._q(f"delivery.list:{before is not None}", build)
        params = {"tenant_id": tenant_id, "webhook_id": webhook_id, "before": before, "limit": limit}
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return [_delivery(r) for r in rows]

    async def claim_deliveries(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        heads = self._q("delivery.heads", _due_heads)
        claim = self._q("delivery.claim", _claim_one)
        lease = self._q(
            "delivery.lease",
            lambda: (
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == P("id"))
                .values(
                    lease_owner=P("owner"),
                    lease_until=P("lease_until"),
                    attempts=webhook_deliveries.c.attempts + 1,
                )
            ),
        )

        async def op(ex: Executor) -> list[ClaimedDelivery]:
            # A window larger than the batch: rows other replicas are claiming are skipped.
            found = await ex.all(heads, {"now": now, "window": 4 * limit})
            claimed: list[ClaimedDelivery] = []
            for head in found:
                row = await ex.one(claim, {"id": head["id"], "now": now})
                if row is None:
                    continue
                await ex.run(lease, {"id": row["id"], "owner": owner, "lease_until": lease_until})
                claimed.append(_claimed(row))
                if len(claimed) == limit:
                    break
            return claimed

        # A read first: an idle outbox (the usual case) costs no write transaction per poll.
        if not await self.backend.read(lambda ex: ex.all(heads, {"now": now, "window": 1})):
            return []
        return await self.backend.write(op)

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
        q = self._q(
            "delivery.finish",
            lambda: (
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == P("id"), webhook_deliveries.c.lease_owner == P("owner"))
                .values(
                    status=P("status"),
                    next_attempt_at=P("next_attempt_at"),
                    last_status=P("last_status"),
                    last_error=P("last_error"),
                    delivered_at=P("delivered_at"),
                    lease_owner=None,
                    lease_until=None,
                )
            ),
        )
        params = {
            "id": delivery_id,
            "owner": owner,
            "status": status,
            "next_attempt_at": next_attempt_at,
            "last_status": last_status,
            "last_error": last_error,
            "delivered_at": at if status == DeliveryStatus.DELIVERED else None,
        }
        return await self.backend.write(lambda ex: ex.run(q, params)) == 1

    async def release_deliveries(self, owner: str) -> int:
        q = self._q(
            "delivery.release",
            lambda: (
                webhook_deliveries.update()
                .where(webhook_deliveries.c.lease_owner == P("owner"))
                .values(lease_owner=None, lease_until=None)
            ),
        )
        return await self.backend.write(lambda ex: ex.run(q, {"owner": owner}))

    async def events_after(self, tenant_id: str, after_seq: int, *, limit: int = 100) -> list[Event]:
        q = self._q(
            "event.after",
            lambda: (
                sa.select(events)
                .where(events.c.tenant_id == P("tenant_id"), events.c.seq > P("after"))
                .order_by(events.c.seq)
                .limit(P("limit"))
            ),
        )
        params = {"tenant_id": tenant_id, "after": after_seq, "limit": limit}
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return [_event(r) for r in rows]

    async def last_event_seq(self, tenant_id: str) -> int:
        q = self._q(
            "event.last",
            lambda: sa.select(sa.func.max(events.c.seq).label("seq")).where(*_where(events, "tenant_id")),
        )
        row = await self.backend.read(lambda ex: ex.one(q, {"tenant_id": tenant_id}))
        return int(row["seq"]) if row is not None and row["seq"] is not None else 0

    async def list_webhook_secrets(self, tenant_id: str) -> list[tuple[str, Ciphertext]]:
        q = self._q(
            "webhook.secret.list",
            lambda: sa.select(webhooks.c.id, webhooks.c.key_id, webhooks.c.secret).where(
                *_where(webhooks, "tenant_id")
            ),
        )
        rows = await self.backend.read(lambda ex: ex.all(q, {"tenant_id": tenant_id}))
        return [(r["id"], Ciphertext(r["key_id"], bytes(r["secret"]))) for r in rows]

    async def replace_webhook_secret(
        self, tenant_id: str, webhook_id: str, old: Ciphertext, new: Ciphertext
    ) -> bool:
        q = self._q(
            "webhook.secret.swap",
            lambda: (
                webhooks.update()
                .where(*_where(webhooks, "tenant_id", "id", "key_id"), webhooks.c.secret == P("old"))
                .values(key_id=P("new_key_id"), secret=P("new"))
            ),
        )
        params = {
            "tenant_id": tenant_id,
            "id": webhook_id,
            "key_id": old.key_id,
            "old": old.data,
            "new_key_id": new.key_id,
            "new": new.data,
        }
        return await self.backend.write(lambda ex: ex.run(q, params)) == 1

    # --- health summary and bulk tests (docs/health.md) ---------------------------------

    async def health_facts(
        self,
        tenant_id: str,
        connector_id: str,
        *,
        windows: Mapping[str, datetime],
        latency_since: datetime,
    ) -> HealthFacts | None:
        names = list(windows)
        get = self._q(
            "connector.get", lambda: sa.select(connectors).where(*_where(connectors, "tenant_id", "id"))
        )
        counts = self._health_counts(len(names))
        latencies = self._q(
            "health.latencies",
            lambda: (
                sa.select(test_results.c.latency_ms)
                .where(
                    *_where(test_results, "tenant_id", "connector_id"),
                    test_results.c.success,
                    test_results.c.latency_ms.is_not(None),
                    test_results.c.tested_at > P("since", type_=TS),
                )
                .order_by(test_results.c.latency_ms)
            ),
        )
        ids = {"tenant_id": tenant_id, "connector_id": connector_id}
        params: dict[str, Any] = {**ids, "oldest": min(windows.values())}
        params |= {f"since{i}": windows[name] for i, name in enumerate(names)}

        async def op(ex: Executor) -> HealthFacts | None:
            row = await ex.one(get, {"tenant_id": tenant_id, "id": connector_id})
            if row is None:
                return None
            counted = await ex.one(counts, params)
            assert counted is not None  # an aggregate always answers one row
            found = await ex.all(latencies, {**ids, "since": latency_since})
            last = await ex.one(self._newest_result(None), ids)
            last_failure = last if last is not None and not last["success"] else None
            if last_failure is None and last is not None:
                last_failure = await ex.one(self._newest_result(False), ids)
            return HealthFacts(
                connector_id=connector_id,
                status=row["status"],
                created_at=_dt(row["created_at"]) or utcnow(),
                updated_at=_dt(row["updated_at"]),
                consecutive_failures=int(row["consecutive_failures"] or 0),
                down_since=_dt(row["down_since"]),
                windows={
                    name: (int(counted[f"n{i}"] or 0), int(counted[f"ok{i}"] or 0))
                    for i, name in enumerate(names)
                },
                latencies=[int(r["latency_ms"]) for r in found],
                last=_check_record(last),
                last_failure=_check_record(last_failure),
                streak_start=await self._streak_start(ex, ids, last, last_failure),
            )

        return await self.backend.read(op)

    def _health_counts(self, n: int) -> Query:
        """Checks and successes after each of ``n`` window starts, in one pass over the
        connector's newest results (the time index bounds it to the longest window)."""

        def build() -> sa.Select[Any]:
            tested_at, cols = test_results.c.tested_at, []
            for i in range(n):
                inside = tested_at > P(f"since{i}", type_=TS)
                cols.append(sa.func.sum(sa.case((inside, 1), else_=0)).label(f"n{i}"))
                ok = sa.and_(inside, test_results.c.success)
                cols.append(sa.func.sum(sa.case((ok, 1), else_=0)).label(f"ok{i}"))
            return sa.select(*cols).where(
                *_where(test_results, "tenant_id", "connector_id"), tested_at > P("oldest", type_=TS)
            )

        return self._q(f"health.counts:{n}", build)

    def _newest_result(self, success: bool | None) -> Query:
        """The newest result (in recording order), or the newest with this outcome."""

        def build() -> sa.Select[Any]:
            conds = _where(test_results, "tenant_id", "connector_id")
            if success is not None:
                conds.append(test_results.c.success if success else sa.not_(test_results.c.success))
            return sa.select(test_results).where(*conds).order_by(test_results.c.id.desc()).limit(1)

        return self._q(f"health.newest:{success}", build)

    async def _streak_start(
        self, ex: Executor, ids: Mapping[str, Any], last: Row | None, last_failure: Row | None
    ) -> datetime | None:
        """``tested_at`` of the first result after the newest one of the other outcome."""
        if last is None:
            return None
        other = last_failure if last["success"] else await ex.one(self._newest_result(True), ids)

        def build(after: bool) -> Callable[[], sa.Select[Any]]:
            def select() -> sa.Select[Any]:
                conds = _where(test_results, "tenant_id", "connector_id")
                if after:
                    conds.append(test_results.c.id > P("after"))
                return sa.select(test_results.c.tested_at).where(*conds).order_by(test_results.c.id).limit(1)

            return select

        q = self._q(f"health.streak:{other is not None}", build(other is not None))
        first = await ex.one(q, {**ids, "after": other["id"] if other is not None else None})
        return _dt(first["tested_at"]) if first is not None else None

    async def count_connectors(
        self,
        tenant_id: str,
        *,
        connector_type: str | None = None,
        status: str | None = None,
        ids: Collection[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        narrowed = ids is not None or metadata is not None

        def build() -> sa.Select[Any]:
            conds = [*_where(connectors, "tenant_id"), connectors.c.status != "deprecated"]
            if connector_type is not None:
                conds.append(connectors.c.connector_type == P("connector_type"))
            if status is not None:
                conds.append(connectors.c.status == P("status"))
            if narrowed:
                conds.append(_reach_condition(self.backend.dialect.name, ids, metadata))
            return sa.select(sa.func.count().label("n")).select_from(connectors).where(*conds)

        key = f"connector.count:{connector_type is not None}:{status is not None}" + _reach_key(ids, metadata)
        q = self._q(key, build)
        params = {"tenant_id": tenant_id, "connector_type": connector_type, "status": status}
        params |= _reach_params(ids, metadata)
        row = await self.backend.read(lambda ex: ex.one(q, params))
        return int(row["n"]) if row is not None else 0

    async def insert_bulk_test(self, record: BulkTestRecord) -> None:
        ins = self._q("bulk.insert", lambda: _insert(bulk_tests))
        params = {
            "id": record.id,
            "tenant_id": record.tenant_id,
            "status": record.status,
            "filters": _dumps(record.filters),
            "total": record.total,
            "done": record.done,
            "ok": record.ok,
            "summary": _dumps(record.summary),
            "owner": record.owner,
            "created_at": record.created_at,
            "finished_at": record.finished_at,
        }
        await self.backend.write(lambda ex: ex.run(ins, params))

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
        q = self._q(
            "bulk.update",
            lambda: (
                bulk_tests.update()
                .where(*_where(bulk_tests, "tenant_id", "id"))
                .values(
                    status=P("status"),
                    total=P("total"),
                    done=P("done"),
                    ok=P("ok"),
                    summary=P("summary"),
                    finished_at=P("finished_at", type_=TS),
                )
            ),
        )
        params = {
            "tenant_id": tenant_id,
            "id": bulk_id,
            "status": status,
            "total": total,
            "done": done,
            "ok": ok,
            "summary": _dumps(summary),
            "finished_at": finished_at,
        }
        await self.backend.write(lambda ex: ex.run(q, params))

    async def get_bulk_test(self, tenant_id: str, bulk_id: str) -> BulkTestRecord | None:
        q = self._q("bulk.get", lambda: sa.select(bulk_tests).where(*_where(bulk_tests, "tenant_id", "id")))
        row = await self.backend.read(lambda ex: ex.one(q, {"tenant_id": tenant_id, "id": bulk_id}))
        if row is None:
            return None
        return BulkTestRecord(
            id=row["id"],
            tenant_id=row["tenant_id"],
            status=row["status"],
            filters=orjson.loads(row["filters"]),
            total=int(row["total"]),
            done=int(row["done"]),
            ok=int(row["ok"]),
            summary=orjson.loads(row["summary"]),
            owner=row["owner"],
            created_at=_dt(row["created_at"]) or utcnow(),
            finished_at=_dt(row["finished_at"]),
        )

    # --- health scheduler and history retention (docs/health.md) -----------------------
    # Statements of their own, never _update: the scheduling columns are the scheduler's
    # bookkeeping, not a change of the connector, so they leave its version (and every
    # ETag a user holds) alone.

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
        skip = list(skip_tenants)
        # One statement per number of skipped tenants: at most concurrency / tenant limit.
        pg = isinstance(self.backend, PostgresBackend)
        q = self._q(f"schedule.claim:{len(skip)}", lambda: _claim_due(len(skip), pg))
        until = now + timedelta(seconds=lease_seconds)
        params: dict[str, Any] = {
            "owner": owner,
            "until": until,
            "now": now,
            "default_interval": float(default_interval),
            "lease": float(lease_seconds),
            "limit": limit,
        }
        params |= {f"skip_{i}": tenant for i, tenant in enumerate(skip)}
        rows = await self.backend.write(lambda ex: ex.all(q, params))
        claimed = [
            ClaimedCheck(
                _connector(r),
                _dt(r["next_check_at"]) or now,
                float(r["check_interval"] or default_interval),
                until,
            )
            for r in rows
        ]
        return sorted(claimed, key=lambda c: c.due_at)

    async def renew_check(self, tenant_id: str, connector_id: str, owner: str, lease_until: datetime) -> bool:
        q = self._q(
            "schedule.renew",
            lambda: (
                connectors.update()
                .where(*_where(connectors, "tenant_id", "id", "lease_owner"))
                .values(lease_until=P("until"))
            ),
        )
        params = {"tenant_id": tenant_id, "id": connector_id, "lease_owner": owner, "until": lease_until}
        return await self.backend.write(lambda ex: ex.run(q, params)) == 1

    async def finish_check(
        self, tenant_id: str, connector_id: str, owner: str, next_check_at: datetime
    ) -> bool:
        q = self._q(
            "schedule.finish",
            lambda: (
                connectors.update()
                .where(*_where(connectors, "tenant_id", "id", "lease_owner"))
                .values(next_check_at=P("next"), lease_owner=sa.null(), lease_until=sa.null())
            ),
        )
        params = {"tenant_id": tenant_id, "id": connector_id, "lease_owner": owner, "next": next_check_at}
        return await self.backend.write(lambda ex: ex.run(q, params)) == 1

    async def release_leases(self, owner: str | None) -> int:
        def build() -> sa.Update:
            held = connectors.c.lease_owner.is_not(None)
            mine = _where(connectors, "lease_owner") if owner is not None else [held]
            return connectors.update().where(*mine).values(lease_owner=sa.null(), lease_until=sa.null())

        q = self._q(f"schedule.release:{owner is not None}", build)
        return await self.backend.write(lambda ex: ex.run(q, {"lease_owner": owner}))

    async def schedule_unscheduled(self, now: datetime, *, default_interval: float, limit: int) -> int:
        find = self._q(
            "schedule.unscheduled",
            lambda: (
                sa.select(connectors.c.id, connectors.c.check_interval)
                .where(connectors.c.next_check_at.is_(None), *_schedulable(connectors))
                .limit(P("limit"))
                .with_for_update(skip_locked=True)
            ),
        )
        place = self._q(
            "schedule.place",
            lambda: (
                connectors.update()
                .where(connectors.c.id == P("id"), connectors.c.next_check_at.is_(None))
                .values(next_check_at=P("at"))
            ),
        )
        interval = float(default_interval)

        async def op(ex: Executor) -> int:
            rows = await ex.all(find, {"limit": limit, "default_interval": interval})
            for row in rows:
                # Jitter, not a secret: the first checks spread over one interval.
                spread = random.random() * float(row["check_interval"] or interval)  # noqa: S311
                await ex.run(place, {"id": row["id"], "at": now + timedelta(seconds=spread)})
            return len(rows)

        return await self.backend.write(op)

    async def unschedule_ineligible(self, now: datetime, *, default_interval: float, limit: int) -> int:
        q = self._q("schedule.park", _park_ineligible)
        params = {"now": now, "default_interval": float(default_interval), "limit": limit}
        return await self.backend.write(lambda ex: ex.run(q, params))

    async def prune_history_before(self, cutoff: datetime, *, limit: int) -> int:
        def build() -> sa.Delete:
            old = test_results.alias("old")
            doomed = (
                sa.select(old.c.id)
                .where(old.c.tested_at < P("cutoff"))
                .limit(P("limit"))
                .with_for_update(skip_locked=True)
            )
            return test_results.delete().where(test_results.c.id.in_(doomed))

        q = self._q("history.prune_age", build)
        return await self.backend.write(lambda ex: ex.run(q, {"cutoff": cutoff, "limit": limit}))

    async def prune_history_beyond(
        self, keep: int, *, after: str | None, connectors: int, limit: int
    ) -> tuple[int, str | None]:
        page_q = self._q(
            f"history.prune_page:{after is not None}", lambda: _connector_page(after is not None)
        )
        cut_q = self._q(
            "history.prune_cut",
            lambda: (
                sa.select(test_results.c.id)
                .where(*_where(test_results, "tenant_id", "connector_id"))
                .order_by(test_results.c.id.desc())
                .limit(1)
                .offset(P("keep"))
            ),
        )

        async def find(ex: Executor) -> tuple[list[Row], dict[str, str]]:
            # Reads take no lock: only the deletes below run in a (short) transaction.
            page = list(await ex.all(page_q, {"after": after, "limit": connectors}))
            cuts: dict[str, str] = {}
            for row in page:
                params = {"tenant_id": row["tenant_id"], "connector_id": row["id"], "keep": keep}
                cut = await ex.one(cut_q, params)
                if cut is not None:
                    cuts[row["id"]] = cut["id"]
            return page, cuts

        page, cuts = await self.backend.read(find)
        if not page:
            return 0, None
        deleted, cursor = 0, str(page[-1]["id"])
        if cuts:
            deleted, cursor = await self.backend.write(lambda ex: self._trim(ex, page, cuts, after, limit))
        finished = len(page) < connectors and cursor == page[-1]["id"]
        return deleted, None if finished else cursor

    async def _trim(
        self, ex: Executor, page: Sequence[Row], cuts: Mapping[str, str], after: str | None, limit: int
    ) -> tuple[int, str]:
        """Delete each connector's results up to its cut (ids grow with time), ``limit`` rows
        in all: the rows deleted and the last connector done."""

        def build() -> sa.Delete:
            old = test_results.alias("old")
            doomed = (
                sa.select(old.c.id)
                .where(
                    old.c.tenant_id == P("tenant_id"),
                    old.c.connector_id == P("connector_id"),
                    old.c.id <= P("cut"),
                )
                .order_by(old.c.id)
                .limit(P("limit"))
            )
            return test_results.delete().where(test_results.c.id.in_(doomed))

        q = self._q("history.prune_count", build)
        deleted, cursor = 0, after or ""  # "": before every id
        for row in page:
            cut = cuts.get(row["id"])
            if cut is not None:
                params = {"tenant_id": row["tenant_id"], "connector_id": row["id"], "cut": cut}
                deleted += await ex.run(q, {**params, "limit": limit - deleted})
                if deleted >= limit:
                    return deleted, cursor  # it may have more: the next step starts at it
            cursor = str(row["id"])
        return deleted, cursor

    async def try_session_lock(self, name: str) -> SessionLock | None:
        if not isinstance(self.backend, PostgresBackend):
            return _ProcessLock()
        import asyncpg

        # A connection of its own: the pool's operations are bounded in time, and the pool
        # resets a connection (dropping its advisory locks) when it is given back.
        try:
            conn = await asyncpg.connect(_asyncpg_dsn(self.backend.url), timeout=self.backend.timeout)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot reach the PostgreSQL store: {type(exc).__name__}") from None
        lock = self._q(
            "lock.try",
            lambda: sa.select(
                sa.func.pg_try_advisory_lock(P("space", type_=sa.Integer), sa.func.hashtext(P("name"))).label(
                    "locked"
                )
            ),
        )
        try:
            async with asyncio.timeout(self.backend.timeout):
                row = await PgExecutor(conn).one(lock, {"space": _LOCK_SPACE, "name": name})
        except BaseException:
            await conn.close()
            raise
        if row is None or not row["locked"]:
            await conn.close()
            return None
        return _PgSessionLock(conn)

    # --- the web console's list rows (docs/console.md) ---

    async def recent_tests(
        self, tenant_id: str, connector_ids: Sequence[str], since: datetime
    ) -> dict[str, RecentTests]:
        if not connector_ids:
            return {}
        n = len(connector_ids)

        def build() -> sa.Select[Any]:
            recent = test_results.c.tested_at > P("since", type_=TS)
            return (
                sa.select(
                    test_results.c.connector_id,
                    sa.func.max(test_results.c.tested_at).label("last_at"),
                    sa.func.sum(sa.case((recent, 1), else_=0)).label("checks"),
                    sa.func.sum(sa.case((sa.and_(recent, test_results.c.success), 1), else_=0)).label("ok"),
                )
                .where(
                    test_results.c.tenant_id == P("tenant_id"),
                    test_results.c.connector_id.in_([P(f"id{i}") for i in range(n)]),
                )
                .group_by(test_results.c.connector_id)
            )

        # One compiled statement per page size: a page holds at most a few hundred rows.
        q = self._q(f"console.recent_tests:{n}", build)
        params: dict[str, Any] = {"tenant_id": tenant_id, "since": since}
        params |= {f"id{i}": connector_id for i, connector_id in enumerate(connector_ids)}
        rows = await self.backend.read(lambda ex: ex.all(q, params))
        return {
            r["connector_id"]: RecentTests(
                r["connector_id"], int(r["checks"] or 0), int(r["ok"] or 0), _dt(r["last_at"])
            )
            for r in rows
        }


def _like_escaped(text: str) -> str:
    """``text`` as a literal inside a ``LIKE`` pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _webhook_params(info: WebhookInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "tenant_id": info.tenant_id,
        "url": info.url,
        "events": _dumps(info.events),
        "description": info.description,
        "enabled": info.enabled,
        "version": info.version,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }


def _webhook(row: Row) -> WebhookInfo:
    created = _dt(row["created_at"])
    assert created is not None
    return WebhookInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        url=row["url"],
        events=orjson.loads(row["events"]),
        description=row["description"],
        enabled=bool(row["enabled"]),
        created_at=created,
        updated_at=_dt(row["updated_at"]),
        version=row["version"],
    )


def _delivery(row: Row) -> DeliveryInfo:
    created = _dt(row["created_at"])
    assert created is not None
    return DeliveryInfo(
        id=row["id"],
        webhook_id=row["webhook_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        connector_id=row["connector_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        created_at=created,
        delivered_at=_dt(row["delivered_at"]),
    )


def _event(row: Row) -> Event:
    at = _dt(row["at"])
    assert at is not None
    payload = orjson.loads(row["payload"])
    return Event(
        EventType(row["type"]),
        row["tenant_id"],
        row["connector_id"],
        payload["data"],
        id=row["id"],
        at=at,
        seq=int(row["seq"]),
    )


def _due_heads() -> sa.Select[Any]:
    """The ids of the oldest due deliveries of enabled webhooks that are each the first one
    pending for their webhook and connector (so one connector's events arrive in order), at
    most ``window`` of them.

    One ranking pass over the pending rows: a per-row ``NOT EXISTS (an earlier pending one)``
    scanned the webhook's earlier rows for each candidate, quadratic in the backlog (565 ms
    a claim at 2,000 pending on PostgreSQL); this is one sort (4 ms there)."""
    d = webhook_deliveries
    rank = sa.func.row_number().over(partition_by=(d.c.webhook_id, d.c.connector_id), order_by=d.c.event_seq)
    ranked = (
        sa.select(
            d.c.id, d.c.connector_id, d.c.next_attempt_at, d.c.event_seq, d.c.lease_until, rank.label("n")
        )
        .select_from(d.join(webhooks, sa.and_(webhooks.c.id == d.c.webhook_id, webhooks.c.enabled.is_(True))))
        .where(d.c.status == DeliveryStatus.PENDING.value)
        .subquery("ranked")
    )
    return (
        sa.select(ranked.c.id)
        .where(
            # An event of no connector waits for nothing; a connector's waits for its earlier ones.
            sa.or_(ranked.c.n == 1, ranked.c.connector_id.is_(None)),
            ranked.c.next_attempt_at <= P("now"),
            sa.or_(ranked.c.lease_until.is_(None), ranked.c.lease_until < P("now")),
        )
        .order_by(ranked.c.next_attempt_at, ranked.c.event_seq)
        .limit(P("window"))
    )


def _claim_one() -> sa.Select[Any]:
    """One due delivery by id with what sending it needs, locked (SKIP LOCKED on PostgreSQL:
    a row another replica is claiming is passed over). Its own conditions are checked again
    here, on the row as it is now: another replica may have leased it since the ranking."""
    cand = webhook_deliveries
    return (
        sa.select(
            cand.c.id,
            cand.c.tenant_id,
            cand.c.webhook_id,
            cand.c.event_id,
            cand.c.event_type,
            cand.c.connector_id,
            cand.c.attempts,
            webhooks.c.url,
            webhooks.c.key_id,
            webhooks.c.secret,
            events.c.payload,
        )
        .select_from(
            cand.join(webhooks, webhooks.c.id == cand.c.webhook_id).join(
                events, events.c.seq == cand.c.event_seq
            )
        )
        .where(
            cand.c.id == P("id"),
            cand.c.status == DeliveryStatus.PENDING.value,
            cand.c.next_attempt_at <= P("now"),
            sa.or_(cand.c.lease_until.is_(None), cand.c.lease_until < P("now")),
        )
        .with_for_update(skip_locked=True, of=cand)
    )


def _claimed(row: Row) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=row["id"],
        tenant_id=row["tenant_id"],
        webhook_id=row["webhook_id"],
        url=row["url"],
        secret=Ciphertext(row["key_id"], bytes(row["secret"])),
        event_id=row["event_id"],
        event_type=row["event_type"],
        connector_id=row["connector_id"],
        payload=row["payload"],
        attempts=int(row["attempts"]) + 1,
    )


def _check_record(row: Row | None) -> CheckRecord | None:
    if row is None:
        return None
    return CheckRecord(
        tested_at=_dt(row["tested_at"]) or utcnow(),
        success=bool(row["success"]),
        latency_ms=row["latency_ms"],
        error_kind=row["error_kind"],
        error=row["error"],
    )


# --- health scheduler: statements ------------------------------------------------------


def _schedulable(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
    """A connector the scheduler checks: neither paused nor retired, checks not turned off."""
    return [
        table.c.status != ConnectorStatus.DISCONNECTED.value,
        table.c.status != ConnectorStatus.DEPRECATED.value,
        sa.func.coalesce(table.c.check_interval, P("default_interval", type_=sa.Float)) > 0,
    ]


#: The first key of connectord's advisory locks on PostgreSQL ("cond"); the second is a hash of the name.
_LOCK_SPACE = 0x636F6E64
_pg_locks = sa.table(
    "pg_locks", sa.column("locktype"), sa.column("classid"), sa.column("objid"), sa.column("objsubid")
)


def _owner_gone(table: sa.FromClause) -> sa.ColumnElement[bool]:
    """PostgreSQL: the lease's owner holds no session lock any more (its process died, its
    connection closed). One uncorrelated look at ``pg_locks`` per claim, hashed."""
    from sqlalchemy.dialects.postgresql import OID

    live = sa.select(_pg_locks.c.objid).where(
        _pg_locks.c.locktype == "advisory", _pg_locks.c.classid == _LOCK_SPACE, _pg_locks.c.objsubid == 2
    )
    return sa.cast(sa.func.hashtext(sa.literal("owner:") + table.c.lease_owner), OID).not_in(live)


def _claim_due(skipped: int, pg: bool) -> sa.Update:
    """Lease the earliest due checks: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
    claiming at once take different rows (SQLite has one writer and ignores the clause)."""
    due = connectors.alias("due")
    free = [due.c.lease_until.is_(None), due.c.lease_until < P("now")]
    if pg:
        # A dead owner's lease ends early, but not before 0.65 of an interval after it was
        # taken (lease_until - lease): its probe may have reached the target just before it
        # died, and no connector is checked twice within half an interval. (A check starts
        # its probe within an eighth of an interval of its claim, or renews it first.)
        wait = sa.func.coalesce(due.c.check_interval, P("default_interval", type_=sa.Float)) * 0.65
        taken_long_ago = due.c.lease_until <= P("now", type_=TS) + sa.func.make_interval(
            0, 0, 0, 0, 0, 0, P("lease", type_=sa.Float) - wait
        )
        free.append(sa.and_(_owner_gone(due), taken_long_ago))
    picked = (
        sa.select(due.c.id)
        .where(
            due.c.next_check_at <= P("now"),
            sa.or_(*free),
            *_schedulable(due),
            *(due.c.tenant_id != P(f"skip_{i}") for i in range(skipped)),
        )
        .order_by(due.c.next_check_at)
        .limit(P("limit"))
        .with_for_update(skip_locked=True)
    )
    return (
        connectors.update()
        .where(connectors.c.id.in_(picked))
        .values(lease_owner=P("owner"), lease_until=P("until"))
        .returning(*connectors.c)
    )


def _park_ineligible() -> sa.Update:
    due = connectors.alias("due")
    parked = (
        sa.select(due.c.id)
        .where(
            due.c.next_check_at <= P("now"),
            sa.or_(due.c.lease_until.is_(None), due.c.lease_until < P("now")),
            sa.not_(sa.and_(*_schedulable(due))),
        )
        .limit(P("limit"))
        .with_for_update(skip_locked=True)
    )
    return connectors.update().where(connectors.c.id.in_(parked)).values(next_check_at=sa.null())


def _connector_page(after: bool) -> sa.Select[Any]:
    conds = [connectors.c.id > P("after")] if after else []
    return (
        sa.select(connectors.c.tenant_id, connectors.c.id)
        .where(*conds)
        .order_by(connectors.c.id)
        .limit(P("limit"))
    )


class _PgSessionLock(SessionLock):
    """An advisory lock on a connection of its own: closing the connection releases it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @property
    def held(self) -> bool:
        return not self._conn.is_closed()

    async def release(self) -> None:
        with contextlib.suppress(Exception):  # a broken connection has released it already
            await self._conn.close(timeout=5)


class _ProcessLock(SessionLock):
    """SQLite: the process that owns the data dir's background work holds every such lock."""

    @property
    def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


def open_store(settings: Settings) -> SqlStore:
    """The store the settings name: PostgreSQL when a database URL is set, else SQLite."""
    from connectord.store.backends import PostgresBackend, SqliteBackend

    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        return SqlStore(PostgresBackend(url, timeout=settings.db_timeout))
    return SqlStore(SqliteBackend(settings.sqlite_path))
