"""Upgrades: a store made by the first release's schema (migration 0001), filled, then opened
by this release, which migrates it to head; every connector, secret, history row, audit
event and key is intact (issue 14.4). On PostgreSQL, replicas starting at once migrate once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from connectord import ConnectorsFacade, Settings
from connectord.secrets import KeyRing
from connectord.store.migrate import _config, head_revision

PASSWORD = "upgrade-pw-" + os.urandom(6).hex()
KEY = "cd_" + os.urandom(12).hex()
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _fill(conn: sa.Connection, ring: KeyRing) -> dict[str, Any]:
    """Rows as the first release wrote them, through its tables (reflected at 0001)."""
    meta = sa.MetaData()
    meta.reflect(conn)
    t = meta.tables
    if conn.dialect.name == "sqlite":
        # The store writes ISO 8601 text with the offset to SQLite (SQLAlchemy's SQLite
        # DATETIME would drop it): write these rows the same way.
        for table in t.values():
            for column in table.columns:
                if isinstance(column.type, sa.DateTime):
                    column.type = sa.String()
    ts: Any = T0 if conn.dialect.name == "postgresql" else T0.isoformat()
    tenant, connector = "0190a000-0000-7000-8000-000000000001", "0190a000-0000-7000-8000-0000000000c1"
    conn.execute(t["tenants"].insert(), {"id": tenant, "name": "old", "created_at": ts})
    key_hash = hashlib.sha256(KEY.encode()).hexdigest()
    conn.execute(
        t["api_keys"].insert(),
        {
            "id": "k1",
            "tenant_id": tenant,
            "name": "ci",
            "key_hash": key_hash,
            "scopes": json.dumps(["connectors:read"]),
            "created_at": ts,
            "revoked_at": None,
        },
    )
    conn.execute(
        t["connectors"].insert(),
        {
            "id": connector,
            "tenant_id": tenant,
            "name": "db",
            "connector_type": "sql",
            "status": "connected",
            "capabilities": json.dumps(["read", "write"]),
            "endpoint": "postgresql://127.0.0.1:5432/app",
            "config": json.dumps({"username": "app"}),
            "metadata": json.dumps({"team": "payments"}),
            "secret_fields": json.dumps(["password"]),
            "version": 4,
            "created_at": ts,
            "updated_at": ts,
            "last_used_at": ts,
        },
    )
    sealed = ring.seal_tree({"password": PASSWORD}, tenant, connector)
    conn.execute(
        t["connector_secrets"].insert(),
        {"connector_id": connector, "tenant_id": tenant, "key_id": sealed.key_id, "ciphertext": sealed.data},
    )
    for i, ok in enumerate((True, False, True)):
        conn.execute(
            t["test_results"].insert(),
            {
                "id": f"0190a000-0000-7000-8000-00000000010{i}",
                "tenant_id": tenant,
                "connector_id": connector,
                "success": ok,
                "latency_ms": 10 + i,
                "error": None if ok else "connection refused by 127.0.0.1:5432",
                "error_kind": None if ok else "refused",
                "details": json.dumps({} if ok else {"error_kind": "refused"}),
                "tested_at": ts,
            },
        )
    conn.execute(
        t["audit_events"].insert(),
        {
            "id": "0190a000-0000-7000-8000-0000000000a1",
            "tenant_id": tenant,
            "actor": "key:k1",
            "action": "connector.create",
            "connector_id": connector,
            "at": ts,
            "details": json.dumps({"name": "db"}),
        },
    )
    return {"tenant": tenant, "connector": connector, "key_hash": key_hash}


async def _check_intact(settings: Settings, ids: dict[str, Any]) -> None:
    async with ConnectorsFacade(settings=settings) as facade:
        assert await facade.store.schema_revision() == head_revision()
        info = await facade.get_connector(ids["connector"], ids["tenant"])
        assert info is not None
        assert (info.name, info.status, info.version, info.metadata) == (
            "db",
            "connected",
            4,
            {"team": "payments"},
        )
        assert info.secret_fields == ["password"]
        assert info.created_at == T0
        assert await facade._open_secrets(info) == {"password": PASSWORD}
        history = (await facade.history(ids["connector"], ids["tenant"])).items
        assert [r.success for r in history] == [True, False, True]
        assert history[1].error_kind == "refused"
        audit = await facade.audit(ids["tenant"])
        assert [a.action for a in audit.items] == ["connector.create"]
        key = await facade.store.find_api_key(ids["key_hash"])
        assert key is not None
        assert key.id == "k1"
        # The upgraded store takes new writes and tests as a new one would.
        fresh = await facade.register_connector(ids["tenant"], "after", "http", "http://127.0.0.1:9/")
        assert (await facade.get_connector(fresh.id, ids["tenant"])) is not None


def test_sqlite_store_from_the_first_schema_upgrades_intact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ring_value = base64.b64encode(os.urandom(32)).decode()
    engine = sa.create_engine(f"sqlite:///{data / 'connectord.db'}")
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0001")
        ids = _fill(conn, KeyRing.from_env_value(ring_value))
    engine.dispose()
    settings = Settings(data_dir=data, secret_key=ring_value)
    asyncio.run(_check_intact(settings, ids))


def test_postgres_store_from_the_first_schema_upgrades_intact_with_replicas_starting_at_once(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    ring_value = base64.b64encode(os.urandom(32)).decode()
    ring = KeyRing.from_env_value(ring_value)

    def first_release(conn: sa.Connection) -> dict[str, Any]:
        command.upgrade(_config(conn), "0001")
        return _fill(conn, ring)

    async def make_old_store() -> dict[str, Any]:
        engine = create_async_engine(fresh_pg_url.replace("postgresql://", "postgresql+asyncpg://", 1))
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(first_release)
        finally:
            await engine.dispose()

    ids = asyncio.run(make_old_store())
    settings = Settings(data_dir=tmp_path, database_url=fresh_pg_url, secret_key=ring_value)

    async def replicas() -> None:
        facades = [ConnectorsFacade(settings=settings) for _ in range(3)]
        await asyncio.gather(*(f.start() for f in facades))  # three migrate at once
        for f in facades:
            assert await f.store.schema_revision() == head_revision()
            await f.aclose()

    asyncio.run(replicas())
    asyncio.run(_check_intact(settings, ids))
