"""The SQL store: one implementation of :class:`Store` for SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from connectord.errors import ConflictError, DuplicateNameError, NotFoundError, VersionConflictError
from connectord.model import (
    AuditEvent,
    ConnectorInfo,
    Event,
    EventType,
    TenantRecord,
    TestResult,
    new_id,
    utcnow,
)
from connectord.secrets import Ciphertext
from connectord.settings import Settings
from connectord.store.backends import (
    Backend,
    Executor,
    ForeignKeyViolationError,
    Query,
    Row,
    UniqueViolationError,
    compile_query,
)
from connectord.store.base import KEEP, ApiKeyRecord, IdempotencyRecord, Keep, Store
from connectord.store.schema import (
    api_keys,
    audit_events,
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


def _connector(row: Row) -> ConnectorInfo:
    created = _dt(row["created_at"])
    assert created is not None
    return ConnectorInfo(
        id=row["id"],
        name=row["name"],
        connector_type=row["connector_type"],
        status=row["status"],
        capabilities=orjson.loads(row["capabilities"]),
        endpoint=row["endpoint"],
        tenant_id=row["tenant_id"],
        created_at=created,
        updated_at=_dt(row["updated_at"]),
        last_used_at=_dt(row["last_used_at"]),
        config=orjson.loads(row["config"]),
        metadata=orjson.loads(row["metadata"]),
        secret_fields=orjson.loads(row["secret_fields"]),
        version=row["version"],
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
    return ApiKeyRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        key_hash=row["key_hash"],
        scopes=tuple(orjson.loads(row["scopes"])),
        created_at=created,
        revoked_at=_dt(row["revoked_at"]),
    )


def _insert(table: sa.Table, names: Collection[str] | None = None) -> sa.Insert:
    """``INSERT`` of every column (or of ``names``; the others take their defaults)."""
    return table.insert().values(
        {c.name: P(c.name) for c in table.columns if names is None or c.name in names}
    )


def _where(table: sa.Table, *names: str) -> list[sa.ColumnElement[bool]]:
    return [table.c[n] == P(n) for n in names]


class SqlStore(Store):
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
        params = {"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at}

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
        if row is None:
            return None
        created = _dt(row["created_at"])
        assert created is not None
        return TenantRecord(row["id"], row["name"], created)

    async def list_tenants(self) -> list[TenantRecord]:
        q = self._q("tenant.list", lambda: sa.select(tenants).order_by(tenants.c.id))
        rows = await self.backend.read(lambda ex: ex.all(q, {}))
        return [TenantRecord(r["id"], r["name"], _dt(r["created_at"]) or datetime.min) for r in rows]

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
            "connector.get", lambda: sa.select(connectors).where(*_where(connectors, "tenant_id", "id"))
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
    ) -> list[ConnectorInfo]:
        key = f"connector.list:{connector_type is not None}:{status is not None}:{after is not None}"

        def build() -> sa.Select[Any]:
            conds = _where(connectors, "tenant_id")
            if connector_type is not None:
                conds.append(connectors.c.connector_type == P("connector_type"))
            if status is not None:
                conds.append(connectors.c.status == P("status"))
            if after is not None:
                conds.append(connectors.c.id > P("after"))
            return (
                sa.select(connectors)
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
        self, tenant_id: str, connector_id: str, audit: AuditEvent, expected_version: int | None = None
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
        audit: AuditEvent,
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
            "id": audit.id,
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
        rows = await self.backend.read(lambda ex: ex.all(q, {}))
        return {r["key_id"]: int(r["n"]) for r in rows}


def open_store(settings: Settings) -> SqlStore:
    """The store the settings name: PostgreSQL when a database URL is set, else SQLite."""
    from connectord.store.backends import PostgresBackend, SqliteBackend

    if settings.database_url is not None:
        return SqlStore(PostgresBackend(settings.database_url.get_secret_value()))
    return SqlStore(SqliteBackend(settings.sqlite_path))
