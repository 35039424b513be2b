"""The facade contract on both backends: validation, versions, audit, probes run under a timeout."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from pydantic import AnyUrl, Field

from connectord import (
    ConnectorsFacade,
    InvalidTransitionError,
    Settings,
    UnknownConnectorTypeError,
    ValidationError,
    VersionConflictError,
)
from connectord.types.base import ConnectorConfig, ConnectorType

if TYPE_CHECKING:
    from conftest import RawSql, VaultType


async def _snapshot(facade: ConnectorsFacade, raw_sql: RawSql, tenant: str) -> tuple[Any, ...]:
    """Everything a failed call must leave as it was."""
    counts = []
    for table in ("connectors", "connector_secrets", "test_results", "audit_events"):
        rows = await raw_sql(f"SELECT count(*) FROM {table} WHERE tenant_id = ?", tenant)
        counts.append(int(rows[0][0]))
    listed = [c.to_dict() for c in await facade.list_connectors(tenant)]
    audit = [e.to_dict() for e in (await facade.audit(tenant, limit=1000)).items]
    return tuple(counts), listed, audit


# --- validation ---------------------------------------------------------------------

INVALID_CONFIGS: list[tuple[str, object, tuple[str | int, ...]]] = [
    ("custom", {"capabilities": ["teleport"]}, ("config", "capabilities", 0)),
    ("custom", {"timeout": -1}, ("config", "timeout")),
    ("custom", {"timeout": "soon"}, ("config", "timeout")),
    ("custom", {"tls": "maybe"}, ("config", "tls")),
    ("custom", {"no_such_option": 1}, ("config", "no_such_option")),
    ("custom", ["not", "an", "object"], ("config",)),
    ("custom", "text", ("config",)),
    ("vault", {"auth": {"kind": "basic", "username": "u"}}, ("config", "auth", "basic", "password")),
    ("vault", {"auth": {"kind": "kerberos"}}, ("config", "auth")),
    ("vault", {"headers": {"X-Key": 5}}, ("config", "headers", "X-Key")),
]


@pytest.mark.parametrize(("ctype", "config", "loc"), INVALID_CONFIGS)
async def test_invalid_config_gives_field_errors_and_stores_nothing(
    facade: ConnectorsFacade,
    tenant: str,
    raw_sql: RawSql,
    vault: VaultType,
    ctype: str,
    config: object,
    loc: tuple[str | int, ...],
) -> None:
    before = await _snapshot(facade, raw_sql, tenant)
    with pytest.raises(ValidationError) as caught:
        await facade.register_connector(tenant, "bad", ctype, endpoint="h.invalid:1", config=config)  # type: ignore[arg-type]
    errors = caught.value.errors
    assert errors, "a config error names its fields"
    assert all(e.loc[0] == "config" for e in errors)
    assert loc in [e.loc for e in errors]
    assert all(e.msg for e in errors)
    assert await _snapshot(facade, raw_sql, tenant) == before


async def test_invalid_config_on_update_changes_nothing(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "c", "vault", config={"password": "pw-keep"})
    before = await _snapshot(facade, raw_sql, tenant)
    with pytest.raises(ValidationError) as caught:
        await facade.update_connector(info.id, tenant, config={"sleep": -5})
    assert [e.loc for e in caught.value.errors] == [("config", "sleep")]
    assert await _snapshot(facade, raw_sql, tenant) == before


async def test_unknown_type_refused(facade: ConnectorsFacade, tenant: str, raw_sql: RawSql) -> None:
    before = await _snapshot(facade, raw_sql, tenant)
    with pytest.raises(UnknownConnectorTypeError) as caught:
        await facade.register_connector(tenant, "c", "teleporter", endpoint="h.invalid:1")
    assert caught.value.errors[0].loc == ("connector_type",)
    assert "teleporter" in caught.value.message
    assert "custom" in caught.value.message  # the known types are listed
    for bad_type in (None, 42, ""):
        with pytest.raises(ValidationError) as bad:
            await facade.register_connector(tenant, "c", bad_type, endpoint="h.invalid:1")  # type: ignore[arg-type]
        assert bad.value.errors[0].loc == ("connector_type",)
    assert await _snapshot(facade, raw_sql, tenant) == before


BAD_NAMES = ["", " lead", "trail ", "a\nb", "tab\there", "x" * 201, "-dash-first", "semi;colon", None, 7]
BAD_ENDPOINTS = [
    "has space:1",
    "ctl\x00:1",
    "x" * 2049,
    "http://h.invalid:99999/",
    "https://h.invalid:port/",
    5,
]
BAD_METADATA = [["list"], "text", {1: "int key"}, {"k": object()}, {"big": "x" * 20000}]


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", v) for v in BAD_NAMES]
    + [("endpoint", v) for v in BAD_ENDPOINTS]
    + [("metadata", v) for v in BAD_METADATA],
)
async def test_bad_name_endpoint_metadata_refused(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql, field: str, value: object
) -> None:
    before = await _snapshot(facade, raw_sql, tenant)
    args: dict[str, Any] = {"name": "ok", "endpoint": "h.invalid:1", "metadata": None}
    args[field] = value
    with pytest.raises(ValidationError) as caught:
        await facade.register_connector(tenant, connector_type="custom", **args)
    assert [e.loc for e in caught.value.errors] == [(field,)]
    assert await _snapshot(facade, raw_sql, tenant) == before

    if value is None:  # None means "leave unchanged" on update
        return
    info = await facade.register_connector(tenant, "target", "custom", endpoint="h.invalid:1")
    with pytest.raises(ValidationError) as on_update:
        await facade.update_connector(info.id, tenant, **{field: value})
    assert [e.loc for e in on_update.value.errors] == [(field,)]
    assert await facade.get_connector(info.id, tenant) == info


async def test_good_names_accepted(facade: ConnectorsFacade, tenant: str) -> None:
    for name in ("a", "Billing DB", "svc:payments@eu-1/v2", "_private", "Ünïcödé-名前", "x" * 200):
        info = await facade.register_connector(tenant, name, "custom", endpoint="h.invalid:1")
        assert info.name == name


@pytest.mark.parametrize(
    ("call", "loc"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "sleeping"}, "status"),
    ],
)
async def test_bad_listing_arguments_refused(
    facade: ConnectorsFacade, tenant: str, call: dict[str, Any], loc: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await facade.list_connectors(tenant, **call)
    assert caught.value.errors[0].loc == (loc,)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


FORGED_CURSORS = [
    "garbage",
    "AAAA",
    "%%%",
    _b64("not-an-id"),
    _b64("\x00" * 36),  # the right length, NULs (PostgreSQL refuses them in text)
    _b64("a" * 36),
    _b64("01A21E75-134D-769A-AC70-1AC961A960DD"),  # not the form this server writes
    _b64("' OR 1=1 --" + "x" * 25),
]


@pytest.mark.parametrize("cursor", FORGED_CURSORS)
async def test_a_forged_cursor_is_refused(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, cursor: str
) -> None:
    info = await facade.register_connector(tenant, "c", "vault")
    for call in (
        lambda: facade.list_connectors_page(tenant, cursor=cursor),
        lambda: facade.audit(tenant, cursor=cursor),
        lambda: facade.history(info.id, tenant, cursor=cursor),
    ):
        with pytest.raises(ValidationError) as caught:
            await call()
        assert caught.value.errors[0].loc == ("cursor",)


class _UrlConfig(ConnectorConfig):
    """A config holding values JSON has no type for."""

    base: AnyUrl = Field(description="A URL typed as a URL.")
    when: datetime | None = Field(default=None, description="A datetime.")
    root: Path | None = Field(default=None, description="A path.")


class _UrlType(ConnectorType):
    name: ClassVar[str] = "urlish"
    config_model: ClassVar[type[ConnectorConfig]] = _UrlConfig


async def test_config_with_non_json_values_is_stored_as_json(facade: ConnectorsFacade, tenant: str) -> None:
    """A type may use pydantic's richer field types; the stored config is plain JSON."""
    facade.registry.register(_UrlType())
    config = {"base": "https://api.example.invalid/v1", "when": "2026-01-02T03:04:05Z", "root": "/srv/x"}
    info = await facade.register_connector(tenant, "u", "urlish", config=config)
    assert info.config == {
        "base": "https://api.example.invalid/v1",
        "when": "2026-01-02T03:04:05Z",
        "root": "/srv/x",
    }
    assert await facade.get_connector(info.id, tenant) == info
    updated = await facade.update_connector(info.id, tenant, config={**config, "base": "https://b.invalid/"})
    assert updated is not None
    assert updated.config["base"] == "https://b.invalid/"


# --- versions -----------------------------------------------------------------------


async def test_version_grows_with_every_change_and_test(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "v", "vault")
    versions = [info.version]
    for change in ({"name": "v2"}, {"metadata": {"a": 1}}, {"config": {"region": "eu"}}, {"status": "ready"}):
        updated = await facade.update_connector(info.id, tenant, **change)  # type: ignore[arg-type]
        assert updated is not None
        versions.append(updated.version)
    await facade.test_connector(info.id, tenant)
    tested = await facade.get_connector(info.id, tenant)
    assert tested is not None
    versions.append(tested.version)
    assert versions == sorted(set(versions)), versions
    assert len(versions) == 6


async def test_stale_expected_version_changes_nothing(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql
) -> None:
    info = await facade.register_connector(tenant, "v", "custom", endpoint="h.invalid:1")
    moved = await facade.update_connector(info.id, tenant, metadata={"n": 1}, expected_version=info.version)
    assert moved is not None
    assert moved.version == info.version + 1
    before = await _snapshot(facade, raw_sql, tenant)
    with pytest.raises(VersionConflictError) as caught:
        await facade.update_connector(info.id, tenant, name="other", expected_version=info.version)
    assert caught.value.current_version == moved.version
    with pytest.raises(VersionConflictError):
        await facade.delete_connector(info.id, tenant, expected_version=info.version)
    assert await _snapshot(facade, raw_sql, tenant) == before
    assert await facade.delete_connector(info.id, tenant, expected_version=moved.version) is True


async def test_concurrent_updates_with_one_expected_version_one_wins(
    facade: ConnectorsFacade, tenant: str
) -> None:
    info = await facade.register_connector(tenant, "race", "custom", endpoint="h.invalid:1")
    for round_ in range(5):
        current = await facade.get_connector(info.id, tenant)
        assert current is not None
        outcomes = await asyncio.gather(
            *(
                facade.update_connector(
                    info.id, tenant, metadata={"writer": i, "round": round_}, expected_version=current.version
                )
                for i in range(6)
            ),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(e, VersionConflictError) for e in losers), losers
        stored = await facade.get_connector(info.id, tenant)
        assert stored == winners[0]
        assert stored is not None
        assert stored.version == current.version + 1


async def test_concurrent_updates_without_expected_version_all_land(
    facade: ConnectorsFacade, tenant: str
) -> None:
    """Without an expected version a conflicting writer retries on the fresh state."""
    info = await facade.register_connector(tenant, "race", "custom", endpoint="h.invalid:1")
    updated = await asyncio.gather(
        *(facade.update_connector(info.id, tenant, metadata={"writer": i}) for i in range(4))
    )
    assert all(u is not None for u in updated)
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.version == info.version + 4


# --- audit --------------------------------------------------------------------------


async def test_one_audit_event_per_change_and_test(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, secret_value: str
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    info = await facade.register_connector(
        tenant, "a", "vault", config={"password": secret_value}, actor="alice"
    )
    await facade.update_connector(info.id, tenant, config={"region": "eu"}, actor="bob")
    await facade.update_connector(info.id, tenant, name="a")  # no change: no event
    await facade.test_connector(info.id, tenant, actor="carol")
    await facade.update_connector(info.id, tenant, status="deprecated", actor="dave")
    with pytest.raises(InvalidTransitionError):
        await facade.test_connector(info.id, tenant, actor="eve")  # refused: no event
    await facade.delete_connector(info.id, tenant, actor="frank")
    assert await facade.delete_connector(info.id, tenant, actor="gina") is False  # nothing: no event

    events = list(reversed((await facade.audit(tenant, connector_id=info.id)).items))
    assert [(e.actor, e.action) for e in events] == [
        ("alice", "connector.create"),
        ("bob", "connector.update"),
        ("carol", "connector.test"),
        ("dave", "connector.update"),
        ("frank", "connector.delete"),
    ]
    finished = datetime.now(UTC) + timedelta(seconds=1)
    for event in events:
        assert event.connector_id == info.id
        assert event.tenant_id == tenant
        assert started <= event.at <= finished
        assert event.at.utcoffset() is not None
        assert secret_value not in repr(event.to_dict())
    assert events[1].details == {"changed": ["config"]}
    assert events[3].details == {"changed": ["status"]}
    assert events[2].details["success"] is True
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_audit_is_paged_newest_first(facade: ConnectorsFacade, tenant: str) -> None:
    for i in range(5):
        await facade.register_connector(tenant, f"c{i}", "custom", endpoint="h.invalid:1")
    events = []
    cursor = None
    while True:
        page = await facade.audit(tenant, limit=3, cursor=cursor)
        assert len(page.items) <= 3
        events.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(events) == len((await facade.audit(tenant, limit=1000)).items)
    assert [e.action for e in events[-2:]] == ["key.create", "tenant.create"]
    names = [e.details.get("name") for e in events if e.action == "connector.create"]
    assert names == [f"c{i}" for i in reversed(range(5))]
    assert len({e.id for e in events}) == len(events)


async def test_unsaved_definition_test_stores_only_an_audit_event(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql, vault: VaultType, secret_value: str
) -> None:
    (counts, listed, audit) = await _snapshot(facade, raw_sql, tenant)
    result = await facade.test_definition(
        tenant, "draft", "vault", config={"password": secret_value, "ok": False}
    )
    assert result.success is False
    assert result.error_kind == "auth"
    assert secret_value not in repr(result.to_dict())
    (counts_after, listed_after, audit_after) = await _snapshot(facade, raw_sql, tenant)
    assert counts_after[:3] == counts[:3]
    assert listed_after == listed
    assert len(audit_after) == len(audit) + 1
    assert audit_after[0]["action"] == "connector.test_unsaved"
    assert audit_after[0]["connector_id"] is None
    with pytest.raises(ValidationError):
        await facade.test_definition(tenant, "draft", "vault", config={"sleep": "long"})


# --- probes under the facade ---------------------------------------------------------


async def test_probe_timeout_is_enforced_by_the_facade(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "slow", "vault", config={"sleep": 30, "timeout": 0.3})
    start = time.monotonic()
    result = await facade.test_connector(info.id, tenant)
    elapsed = time.monotonic() - start
    assert result.success is False
    assert result.error_kind == "timeout"
    assert elapsed < 0.3 + 2
    assert result.latency_ms is not None
    assert result.latency_ms >= 250


async def test_probe_timeout_is_bounded_by_the_server_maximum(
    tmp_path: Path, vault_type: type[VaultType]
) -> None:
    settings = Settings(data_dir=tmp_path, probe_timeout=0.2, probe_timeout_max=0.4)
    async with ConnectorsFacade(settings=settings) as facade:
        facade.registry.register(vault_type())
        from connectord.admin import Admin

        tenant, _ = await Admin(facade).create_tenant("bounded")
        info = await facade.register_connector(
            tenant.id, "slow", "vault", config={"sleep": 30, "timeout": 50}
        )
        start = time.monotonic()
        result = await facade.test_connector(info.id, tenant.id)
        assert result.error_kind == "timeout"
        assert time.monotonic() - start < 0.4 + 2
        default = await facade.register_connector(tenant.id, "default", "vault", config={"sleep": 30})
        start = time.monotonic()
        assert (await facade.test_connector(default.id, tenant.id)).error_kind == "timeout"
        assert time.monotonic() - start < 0.2 + 2


async def test_a_crashing_probe_is_an_internal_failure_not_an_exception(
    facade: ConnectorsFacade,
    tenant: str,
    vault: VaultType,
    secret_value: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    info = await facade.register_connector(
        tenant, "b", "vault", config={"boom": True, "password": secret_value}
    )
    result = await facade.test_connector(info.id, tenant)
    assert result.success is False
    assert result.error_kind == "internal"
    assert "RuntimeError" in (result.error or "")
    assert secret_value not in repr(result.to_dict())
    assert secret_value not in caplog.text
    assert "driver crashed" in caplog.text  # logged for operators, redacted


async def test_test_sets_status_last_used_and_history(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "t", "vault", config={"region": "eu-1"})
    result = await facade.test_connector(info.id, tenant)
    assert result.success is True
    assert result.connector_id == info.id
    assert result.details == {"region": "eu-1"}
    assert result.tested_at is not None
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.status == "connected"
    assert stored.last_used_at == result.tested_at
    history = await facade.history(info.id, tenant)
    assert [r.to_dict() for r in history.items] == [result.to_dict()]


async def test_bulk_test_covers_every_connector_once(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    ids = [
        (await facade.register_connector(tenant, f"c{i}", "vault", config={"ok": i % 2 == 0})).id
        for i in range(7)
    ]
    deprecated = await facade.register_connector(tenant, "old", "vault")
    await facade.update_connector(deprecated.id, tenant, status="deprecated")
    results = [r async for r in facade.test_connectors(tenant, concurrency=3)]
    assert sorted(r.connector_id for r in results) == sorted(ids)
    for result in results:
        stored = await facade.get_connector(result.connector_id, tenant)
        assert stored is not None
        assert stored.status == ("connected" if result.success else "error")
    assert (await facade.get_connector(deprecated.id, tenant)).status == "deprecated"  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        [r async for r in facade.test_connectors(tenant, concurrency=0)]
