"""The store contract, written once and run on SQLite and on PostgreSQL.

Every test here goes through the facade (the store's only caller) and, where
the claim is about what is stored, reads the tables directly (``raw_sql``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from connectord import (
    AuthenticationError,
    ConnectorInfo,
    ConnectorsFacade,
    DuplicateNameError,
    NotFoundError,
    Settings,
    TestResult,
    ValidationError,
)
from connectord.admin import Admin
from connectord.store.schema import metadata

if TYPE_CHECKING:
    from conftest import RawSql, VaultType

DESIGN_FIELDS = {
    "id",
    "name",
    "connector_type",
    "status",
    "capabilities",
    "endpoint",
    "tenant_id",
    "created_at",
    "updated_at",
    "last_used_at",
    "config",
    "metadata",
}


async def _count(raw_sql: RawSql, table: str, tenant: str) -> int:
    rows = await raw_sql(f"SELECT count(*) FROM {table} WHERE tenant_id = ?", tenant)
    return int(rows[0][0])


async def _audit_count(facade: ConnectorsFacade, tenant: str) -> int:
    return len((await facade.audit(tenant, limit=1000)).items)


def _is_aware_iso(text: object) -> bool:
    return isinstance(text, str) and datetime.fromisoformat(text).utcoffset() is not None


# --- CRUD ---------------------------------------------------------------------------


async def test_register_get_list_round_trip(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(
        tenant,
        "billing-db",
        "custom",
        endpoint="db.example.invalid:5432",
        config={"capabilities": ["read", "write"], "timeout": 3},
        metadata={"team": "billing", "tags": ["prod", 1]},
    )
    assert info.name == "billing-db"
    assert info.connector_type == "custom"
    assert info.status == "registered"
    assert info.capabilities == ["read", "write"]
    assert info.endpoint == "db.example.invalid:5432"
    assert info.tenant_id == tenant
    assert info.config == {"capabilities": ["read", "write"], "timeout": 3}
    assert info.metadata == {"team": "billing", "tags": ["prod", 1]}
    assert info.version == 1
    assert info.updated_at is None
    assert info.last_used_at is None
    assert info.secret_fields == []

    got = await facade.get_connector(info.id, tenant)
    assert got == info
    assert [c.id for c in await facade.list_connectors(tenant)] == [info.id]
    assert (await facade.list_connectors_page(tenant)).items == [info]


#: A connector's own scheduling (docs/health.md), beside the design's fields.
SCHEDULE_FIELDS = {"check_interval", "failure_threshold"}


async def test_to_dict_has_exactly_the_design_fields(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "c", "custom", endpoint="h.invalid:1")
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    for candidate in (info, stored):
        data = candidate.to_dict()
        assert set(data) == DESIGN_FIELDS | {"secret_fields", "version"} | SCHEDULE_FIELDS
        assert _is_aware_iso(data["created_at"])
        assert data["updated_at"] is None
        assert data["last_used_at"] is None
        assert isinstance(data["version"], int)
    updated = await facade.update_connector(info.id, tenant, metadata={"a": 1})
    assert updated is not None
    assert _is_aware_iso(updated.to_dict()["updated_at"])
    assert updated.updated_at is not None
    assert updated.updated_at >= updated.created_at


async def test_update_each_field(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "c", "custom", endpoint="a.invalid:1")
    steps: list[tuple[dict[str, object], Callable[[ConnectorInfo], bool]]] = [
        ({"name": "renamed"}, lambda c: c.name == "renamed"),
        ({"endpoint": "b.invalid:2"}, lambda c: c.endpoint == "b.invalid:2"),
        ({"config": {"capabilities": ["query"]}}, lambda c: c.capabilities == ["query"]),
        ({"metadata": {"owner": "ops"}}, lambda c: c.metadata == {"owner": "ops"}),
        ({"status": "disconnected"}, lambda c: c.status == "disconnected"),
        ({"endpoint": ""}, lambda c: c.endpoint is None),
    ]
    version = info.version
    for change, check in steps:
        updated = await facade.update_connector(info.id, tenant, **change)  # type: ignore[arg-type]
        assert updated is not None
        assert check(updated), change
        assert updated.version == version + 1, change
        version = updated.version
        stored = await facade.get_connector(info.id, tenant)
        assert stored == updated, change
    assert stored is not None
    assert stored.created_at == info.created_at


async def test_update_without_changes_keeps_the_version(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "c", "custom", endpoint="a.invalid:1")
    same = await facade.update_connector(info.id, tenant, name="c", endpoint="a.invalid:1")
    assert same == info


async def test_delete(facade: ConnectorsFacade, tenant: str, raw_sql: RawSql, vault: VaultType) -> None:
    keep = await facade.register_connector(tenant, "keep", "custom", endpoint="h.invalid:1")
    info = await facade.register_connector(tenant, "gone", "vault", config={"password": "pw-123"})
    await facade.test_connector(info.id, tenant)
    assert await _count(raw_sql, "test_results", tenant) == 1
    assert await _count(raw_sql, "connector_secrets", tenant) == 1

    assert await facade.delete_connector(info.id, tenant) is True
    assert await facade.get_connector(info.id, tenant) is None
    assert [c.id for c in await facade.list_connectors(tenant)] == [keep.id]
    assert await facade.delete_connector(info.id, tenant) is False
    assert await _count(raw_sql, "test_results", tenant) == 0
    assert await _count(raw_sql, "connector_secrets", tenant) == 0
    # The name is free again.
    again = await facade.register_connector(tenant, "gone", "custom", endpoint="h.invalid:1")
    assert again.id != info.id


async def test_data_survives_a_restart(settings: Settings, vault: VaultType) -> None:
    async with ConnectorsFacade(settings=settings) as first:
        tenant, _ = await Admin(first).create_tenant(f"r-{secrets.token_hex(4)}")
        first.registry.register(type(vault)())
        info = await first.register_connector(tenant.id, "c", "vault", config={"password": "pw-restart"})
    async with ConnectorsFacade(settings=settings) as second:
        second.registry.register(type(vault)())
        assert await second.get_connector(info.id, tenant.id) == info
        result = await second.test_connector(info.id, tenant.id)
        assert result.success, result.error


async def test_list_filters(facade: ConnectorsFacade, tenant: str, vault: VaultType) -> None:
    a = await facade.register_connector(tenant, "a", "custom", endpoint="h.invalid:1")
    b = await facade.register_connector(tenant, "b", "vault")
    c = await facade.register_connector(tenant, "c", "vault")
    await facade.update_connector(c.id, tenant, status="deprecated")
    assert [x.id for x in await facade.list_connectors(tenant)] == [a.id, b.id, c.id]
    assert [x.id for x in await facade.list_connectors(tenant, connector_type="vault")] == [b.id, c.id]
    assert [x.id for x in await facade.list_connectors(tenant, status="deprecated")] == [c.id]
    assert [x.id for x in await facade.list_connectors(tenant, "vault", "registered")] == [b.id]
    assert await facade.list_connectors(tenant, connector_type="http") == []
    page = await facade.list_connectors_page(tenant, connector_type="vault", limit=1)
    assert [x.id for x in page.items] == [b.id]
    assert page.next_cursor is not None
    rest = await facade.list_connectors_page(tenant, connector_type="vault", limit=1, cursor=page.next_cursor)
    assert [x.id for x in rest.items] == [c.id]
    assert rest.next_cursor is None


# --- tenancy ------------------------------------------------------------------------


async def test_another_tenants_id_behaves_as_missing(
    facade: ConnectorsFacade, tenant: str, other_tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "mine", "vault", config={"password": "pw-tenancy"})
    await facade.test_connector(info.id, tenant)
    before = await facade.get_connector(info.id, tenant)
    own_audit = await _audit_count(facade, tenant)

    assert await facade.get_connector(info.id, other_tenant) is None
    assert await facade.update_connector(info.id, other_tenant, name="stolen") is None
    assert await facade.update_connector(info.id, other_tenant, status="deprecated") is None
    assert await facade.update_connector(info.id, other_tenant, expected_version=1, metadata={}) is None
    assert await facade.delete_connector(info.id, other_tenant) is False
    with pytest.raises(NotFoundError):
        await facade.test_connector(info.id, other_tenant)
    with pytest.raises(NotFoundError):
        await facade.history(info.id, other_tenant)
    assert await facade.list_connectors(other_tenant) == []
    assert (await facade.list_connectors_page(other_tenant)).items == []
    assert (await facade.audit(other_tenant, connector_id=info.id)).items == []
    assert all(e.connector_id != info.id for e in (await facade.audit(other_tenant)).items)

    # Nothing the other tenant did touched the connector or its audit trail.
    assert await facade.get_connector(info.id, tenant) == before
    assert await _audit_count(facade, tenant) == own_audit
    assert len((await facade.history(info.id, tenant)).items) == 1


async def test_a_tenant_id_is_a_namespace(facade: ConnectorsFacade, tenant: str) -> None:
    """Library callers may use their own tenant ids without registering a tenant."""
    info = await facade.register_connector("acme", "c", "custom", "h.invalid:1")
    assert await facade.get_connector(info.id, "acme") == info
    assert await facade.get_connector(info.id, tenant) is None
    assert await facade.delete_connector(info.id, "acme") is True


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "acme\n", "a/b", None, 7])
async def test_a_malformed_tenant_id_is_refused_everywhere(
    facade: ConnectorsFacade, tenant: str, bad: object
) -> None:
    info = await facade.register_connector(tenant, "c", "custom", "h.invalid:1")
    calls = [
        lambda t: facade.register_connector(t, "c2", "custom", "h.invalid:1"),
        lambda t: facade.get_connector(info.id, t),
        lambda t: facade.list_connectors(t),
        lambda t: facade.list_connectors_page(t),
        lambda t: facade.update_connector(info.id, t, name="x"),
        lambda t: facade.delete_connector(info.id, t),
        lambda t: facade.test_connector(info.id, t),
        lambda t: facade.history(info.id, t),
        lambda t: facade.audit(t),
        lambda t: facade.test_definition(t, "d", "custom", "h.invalid:1"),
    ]
    for call in calls:
        with pytest.raises(ValidationError) as caught:
            await call(bad)
        assert caught.value.errors[0].loc == ("tenant_id",)
    assert await facade.get_connector(info.id, tenant) == info


async def test_malformed_ids_are_simply_missing(facade: ConnectorsFacade, tenant: str) -> None:
    for bad in ("", "nope", "x" * 300, "'; DROP TABLE connectors; --"):
        assert await facade.get_connector(bad, tenant) is None
        assert await facade.update_connector(bad, tenant, name="n") is None
        assert await facade.delete_connector(bad, tenant) is False
        with pytest.raises(NotFoundError):
            await facade.test_connector(bad, tenant)


# --- names --------------------------------------------------------------------------


async def test_duplicate_name_refused_within_a_tenant_only(
    facade: ConnectorsFacade, tenant: str, other_tenant: str, raw_sql: RawSql
) -> None:
    first = await facade.register_connector(tenant, "shared-name", "custom", endpoint="h.invalid:1")
    audit_before = await _audit_count(facade, tenant)
    with pytest.raises(DuplicateNameError):
        await facade.register_connector(tenant, "shared-name", "custom", endpoint="h.invalid:2")
    assert await _count(raw_sql, "connectors", tenant) == 1
    assert await _audit_count(facade, tenant) == audit_before

    elsewhere = await facade.register_connector(other_tenant, "shared-name", "custom", endpoint="h.invalid:1")
    assert elsewhere.id != first.id


async def test_rename_onto_a_taken_name_refused(facade: ConnectorsFacade, tenant: str) -> None:
    a = await facade.register_connector(tenant, "a", "custom", endpoint="h.invalid:1")
    b = await facade.register_connector(tenant, "b", "custom", endpoint="h.invalid:1")
    audit_before = await _audit_count(facade, tenant)
    with pytest.raises(DuplicateNameError):
        await facade.update_connector(b.id, tenant, name="a")
    with pytest.raises(DuplicateNameError):
        await facade.update_connector(b.id, tenant, name="a", expected_version=b.version)
    assert await facade.get_connector(b.id, tenant) == b
    assert await facade.get_connector(a.id, tenant) == a
    assert await _audit_count(facade, tenant) == audit_before


# --- atomicity ----------------------------------------------------------------------


async def test_a_failed_write_in_a_batch_leaves_nothing(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql, vault: VaultType
) -> None:
    """Concurrent writes share one SQLite transaction (group commit); the one that
    fails must leave no row, no secret and no audit event, and must not undo the others."""
    await facade.register_connector(tenant, "taken", "custom", endpoint="h.invalid:1")
    audit_before = await _audit_count(facade, tenant)
    outcomes = await asyncio.gather(
        *[
            facade.register_connector(
                tenant, "taken" if i == 5 else f"ok-{i}", "vault", config={"password": f"pw-{i}"}
            )
            for i in range(10)
        ],
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 1
    assert isinstance(failed[0], DuplicateNameError)
    assert isinstance(outcomes[5], DuplicateNameError)
    names = sorted(c.name for c in await facade.list_connectors(tenant))
    assert names == sorted(["taken", *(f"ok-{i}" for i in range(10) if i != 5)])
    assert await _count(raw_sql, "connector_secrets", tenant) == 9
    assert await _audit_count(facade, tenant) == audit_before + 9
    for created in outcomes:
        if isinstance(created, ConnectorInfo):
            assert await facade.get_connector(created.id, tenant) == created


async def test_history_is_newest_first_and_paged(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "h", "vault")
    results: list[TestResult] = []
    for ok in (True, False, True):
        await facade.update_connector(info.id, tenant, config={"ok": ok})
        results.append(await facade.test_connector(info.id, tenant))
    page = await facade.history(info.id, tenant, limit=2)
    assert [r.success for r in page.items] == [True, False]
    assert page.next_cursor is not None
    rest = await facade.history(info.id, tenant, limit=2, cursor=page.next_cursor)
    assert [r.success for r in rest.items] == [True]
    assert rest.next_cursor is None
    stored = [*page.items, *rest.items]
    assert [r.tested_at for r in stored] == [r.tested_at for r in reversed(results)]
    assert stored[1].error == results[1].error
    assert stored[1].error_kind == "auth"
    assert all(r.connector_id == info.id for r in stored)


# --- schema -------------------------------------------------------------------------


async def test_migrations_create_the_declared_schema(facade: ConnectorsFacade, settings: Settings) -> None:
    """The Alembic migrations and ``store/schema.py`` describe the same tables."""
    if settings.database_url is None:
        engine = sa.create_engine(f"sqlite:///{settings.sqlite_path}")
        try:
            with engine.connect() as conn:
                _check_schema(conn)
        finally:
            engine.dispose()
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        url = settings.database_url.get_secret_value().replace("postgresql://", "postgresql+asyncpg://", 1)
        async_engine = create_async_engine(url, poolclass=sa.NullPool)
        try:
            async with async_engine.connect() as aconn:
                await aconn.run_sync(_check_schema)
        finally:
            await async_engine.dispose()


def _check_schema(conn: Any) -> None:
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    assert tables == set(metadata.tables)
    for name, table in metadata.tables.items():
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert set(columns) == {c.name for c in table.columns}, name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (name, column.name)
        assert {tuple(c.name for c in table.primary_key)} == {
            tuple(inspector.get_pk_constraint(name)["constrained_columns"])
        }, name
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("connectors")}
    indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("connectors") if i["unique"]}
    assert ("tenant_id", "name") in uniques | indexes


async def test_two_facades_start_on_one_database_at_once(
    isolated_settings: Settings, raw_sql_factory: Callable[[Settings], RawSql]
) -> None:
    """Replicas starting together migrate one at a time (advisory lock on PostgreSQL)."""
    facades = [ConnectorsFacade(settings=isolated_settings) for _ in range(3)]
    try:
        await asyncio.gather(*(f.start() for f in facades))
        tenant, _ = await Admin(facades[0]).create_tenant("together")
        infos = await asyncio.gather(
            *(
                f.register_connector(tenant.id, f"c{i}", "custom", "h.invalid:1")
                for i, f in enumerate(facades)
            )
        )
        for f in facades:
            assert len(await f.list_connectors(tenant.id)) == len(infos)
    finally:
        for f in facades:
            await f.aclose()
    rows = await raw_sql_factory(isolated_settings)("SELECT version_num FROM alembic_version")
    assert len(rows) == 1


# --- tenants and API keys -------------------------------------------------------------


async def test_tenants_and_keys(admin: Admin, raw_sql: RawSql) -> None:
    name = f"acme-{secrets.token_hex(4)}"
    tenant, first = await admin.create_tenant(name)
    assert (await admin.get_tenant(tenant.id)) == tenant
    assert tenant in await admin.list_tenants()
    with pytest.raises(DuplicateNameError):
        await admin.create_tenant(name)

    principal = await admin.authenticate(first.api_key)
    assert principal.tenant_id == tenant.id
    assert principal.scopes == {"connectors:read", "connectors:write", "connectors:test"}
    reader = await admin.create_key(tenant.id, name="ci", scopes=("connectors:read",))
    assert (await admin.authenticate(reader.api_key)).scopes == {"connectors:read"}

    stored = await raw_sql("SELECT key_hash FROM api_keys WHERE tenant_id = ?", tenant.id)
    assert len(stored) == 2
    assert all(first.api_key not in row[0] and reader.api_key not in row[0] for row in stored)
    assert {k.id for k in await admin.list_keys(tenant.id)} == {first.key_id, reader.key_id}

    assert await admin.revoke_key(tenant.id, reader.key_id) is True
    assert await admin.revoke_key(tenant.id, reader.key_id) is False
    with pytest.raises(AuthenticationError):
        await admin.authenticate(reader.api_key)
    for bad in (None, "", "cdk_unknown", first.api_key + "x", "Bearer " + first.api_key):
        with pytest.raises(AuthenticationError):
            await admin.authenticate(bad)
    with pytest.raises(ValidationError):
        await admin.create_key(tenant.id, scopes=("connectors:everything",))
    with pytest.raises(ValidationError):
        await admin.create_key(tenant.id, scopes=())
    with pytest.raises(NotFoundError):
        await admin.create_key("00000000-0000-7000-8000-000000000000")

    actions = [e.action for e in reversed((await admin.facade.audit(tenant.id)).items)]
    assert actions == ["tenant.create", "key.create", "key.create", "key.revoke"]


async def test_a_key_is_revoked_only_by_its_tenant(admin: Admin, tenant: str, other_tenant: str) -> None:
    key = await admin.create_key(tenant)
    assert await admin.revoke_key(other_tenant, key.key_id) is False
    assert (await admin.authenticate(key.api_key)).tenant_id == tenant
