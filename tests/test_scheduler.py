"""The health scheduler in one process, on SQLite and PostgreSQL: claims and leases in the
store, the loop against a real loopback HTTP target, concurrency limits, shutdown, and
SQLite's single owner. Several processes: tests/test_scheduler_replicas.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.errors import ConfigurationError, ConflictError
from connectord.facade import ConnectorsFacade
from connectord.health import service as service_module
from connectord.health.scheduler import Scheduler, next_check_time
from connectord.health.service import HealthService
from connectord.model import utcnow
from connectord.settings import Settings
from tests.conftest import RawSql, raw_sql_on
from tests.scheduler_target import CountingTarget

MakeFacade = Callable[..., Any]


@pytest.fixture
async def make_facade(isolated_settings: Settings) -> AsyncIterator[MakeFacade]:
    """Started facades on the test's own database (the scheduler acts on every tenant),
    with settings overridden as asked; closed at the end."""
    opened: list[ConnectorsFacade] = []

    async def make(**overrides: Any) -> ConnectorsFacade:
        base = {"egress_allow": ["127.0.0.0/8"], **overrides}
        facade = ConnectorsFacade(settings=isolated_settings.model_copy(update=base))
        await facade.start()
        opened.append(facade)
        return facade

    yield make
    for facade in opened:
        await facade.aclose()


@pytest.fixture
async def target() -> AsyncIterator[CountingTarget]:
    """A loopback HTTP target that answers at once."""
    running = await CountingTarget().start()
    yield running
    await running.stop()


async def _tenant(facade: ConnectorsFacade) -> str:
    record, _ = await Admin(facade).create_tenant(f"t-{secrets.token_hex(4)}")
    return record.id


async def _register(
    facade: ConnectorsFacade, tenant: str, target: CountingTarget, n: int, group: str
) -> list[str]:
    ids = []
    for i in range(n):
        info = await facade.register_connector(
            tenant, f"{group}-{i}", "http", endpoint=target.url(f"{group}/{i}")
        )
        ids.append(info.id)
    return ids


async def _make_due(settings: Settings) -> None:
    """Every connector due a second ago (as a first scheduling and a long wait would leave it)."""
    past = utcnow() - timedelta(seconds=1)
    # SQLite keeps timestamps as ISO 8601 text; asyncpg takes the datetime.
    await raw_sql_on(settings)(
        "UPDATE connectors SET next_check_at = ?", past if settings.uses_postgres else past.isoformat()
    )


async def _column(raw: RawSql, column: str) -> dict[str, Any]:
    return {row[0]: row[1] for row in await raw(f"SELECT id, {column} FROM connectors")}


# --- the cadence rule -------------------------------------------------------------------


def test_next_check_keeps_the_cadence_and_never_crowds() -> None:
    due = utcnow()
    second = timedelta(seconds=1)
    # A little late: the next is one interval after the due time, not after the check.
    assert next_check_time(due, 1.0, due + second * 0.3) == due + second
    # Later: as close to the cadence as 0.6 of an interval from now allows.
    assert next_check_time(due, 1.0, due + second * 0.7) == due + second * 1.3
    # An interval or more behind (a backlog): from now, not a burst of catch-up checks.
    assert next_check_time(due, 10.0, due + second * 10) == due + second * 20
    assert next_check_time(due, 10.0, due + second * 95) == due + second * 105
    for late in (0.0, 0.2, 0.39, 0.4, 0.41, 0.7, 0.99, 1.0, 3.0):
        now = due + second * late
        assert next_check_time(due, 1.0, now) - now >= second * 0.6


def test_settings_bound_the_lease_and_the_interval(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).lease_seconds == 90.0  # the probe maximum (60 s) + 30 s
    with pytest.raises(ConfigurationError, match="CONNECTORD_SCHEDULER_LEASE"):
        Settings(data_dir=tmp_path, scheduler_lease=60).check_safe()
    Settings(data_dir=tmp_path, scheduler_lease=0.7, probe_timeout=0.5, probe_timeout_max=0.5).check_safe()
    with pytest.raises(ValueError, match="check_interval"):
        Settings(data_dir=tmp_path, check_interval=0.05)
    with pytest.raises(ValueError, match="scheduler"):
        Settings(data_dir=tmp_path, scheduler="maybe")  # type: ignore[arg-type]


# --- the store's side: scheduling, claims, leases ---------------------------------------


async def test_first_checks_spread_over_the_interval_without_a_version_bump(
    make_facade: MakeFacade, isolated_settings: Settings, target: CountingTarget
) -> None:
    facade = await make_facade(check_interval=100.0)
    tenant = await _tenant(facade)
    ids = await _register(facade, tenant, target, 120, "spread")
    raw = raw_sql_on(isolated_settings)
    before = await _column(raw, "version")
    start = utcnow()
    assert await facade.schedule_checks(50) == 50  # bounded batches
    assert await facade.schedule_checks(500) == 70
    assert await facade.schedule_checks(500) == 0  # each connector once
    due = await _column(raw, "next_check_at")
    assert sorted(due) == sorted(ids)
    times = [_as_dt(v) for v in due.values()]
    offsets = [(t - start).total_seconds() for t in times]
    assert all(-1 < o < 101 for o in offsets), offsets
    assert max(offsets) - min(offsets) > 50, "the first checks are spread over the interval"
    assert await _column(raw, "version") == before, "scheduling is bookkeeping, not a change"


def _as_dt(value: Any) -> Any:
    from datetime import datetime

    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


async def test_claims_are_exclusive_and_an_expired_lease_is_taken_over(
    make_facade: MakeFacade, isolated_settings: Settings, target: CountingTarget
) -> None:
    facade = await make_facade()
    other = await make_facade()  # a second replica on the same database
    tenant = await _tenant(facade)
    ids = await _register(facade, tenant, target, 6, "claim")
    raw = raw_sql_on(isolated_settings)
    await _make_due(isolated_settings)
    versions = await _column(raw, "version")
    store, now = facade.store, utcnow()
    claim = {"lease_seconds": 5.0, "default_interval": 300.0}
    alive = [await facade.hold_owner_lock("a"), await other.hold_owner_lock("b")]

    first, second = await asyncio.gather(
        store.claim_due_checks("a", now, limit=4, **claim),
        other.store.claim_due_checks("b", now, limit=4, **claim),
    )
    assert len(first) + len(second) == 6
    assert not {c.connector.id for c in first} & {c.connector.id for c in second}
    assert await store.claim_due_checks("c", now, limit=10, **claim) == [], "every row is leased"
    owners = await _column(raw, "lease_owner")
    assert {owners[c.connector.id] for c in first} <= {"a"}
    assert {owners[c.connector.id] for c in second} <= {"b"}

    held = first[0].connector
    assert not await store.finish_check(tenant, held.id, "c", now), "only the holder finishes"
    assert not await store.renew_check(tenant, held.id, "c", now + timedelta(seconds=60))
    # A replica that hangs (its session alive) keeps its leases until they expire; then
    # another takes them over.
    later = now + timedelta(seconds=6)
    taken = await store.claim_due_checks("c", later, limit=10, **claim)
    assert sorted(c.connector.id for c in taken) == sorted(ids)
    assert not await store.finish_check(tenant, held.id, "a", later), "the hung owner lost it"
    assert await store.release_leases("c") == 6
    assert set((await _column(raw, "lease_owner")).values()) == {None}
    assert await _column(raw, "version") == versions, "claims and leases never bump the version"
    for lock in alive:
        await lock.release()


@pytest.mark.postgres
async def test_a_dead_replicas_leases_end_with_its_session(
    fresh_pg_url: str, secret_key_value: str, tmp_path: Path, target: CountingTarget
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_pg_url,
        secret_key=secret_key_value,
        egress_allow=["127.0.0.0/8"],
    )
    async with ConnectorsFacade(settings=settings) as facade:
        tenant = await _tenant(facade)
        await _register(facade, tenant, target, 4, "dead")
        await _make_due(settings)
        claim = {"lease_seconds": 300.0, "default_interval": 2.0}
        dying, living = await facade.hold_owner_lock("dying"), await facade.hold_owner_lock("living")
        now = utcnow()
        assert len(await facade.store.claim_due_checks("dying", now, limit=2, **claim)) == 2
        assert len(await facade.store.claim_due_checks("living", now, limit=2, **claim)) == 2
        assert await facade.store.claim_due_checks("other", now, limit=10, **claim) == []
        await dying.release()  # its connection closes, as when its process is killed
        soon = await facade.store.claim_due_checks("other", now + timedelta(seconds=1.2), limit=10, **claim)
        assert soon == [], "not within 0.65 of an interval of the dead owner's claim: its probe may have run"
        later = now + timedelta(seconds=1.4)
        taken = await facade.store.claim_due_checks("other", later, limit=10, **claim)
        assert len(taken) == 2, "the dead owner's leases, long before they expire; not the living one's"
        owners = await _column(raw_sql_on(settings), "lease_owner")
        assert sorted(owners.values()) == ["living", "living", "other", "other"]
        await living.release()


async def test_sqlite_owner_clears_stale_leases_when_it_starts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, egress_allow=["127.0.0.0/8"])
    async with ConnectorsFacade(settings=settings) as facade:
        tenant = await _tenant(facade)
        await facade.register_connector(tenant, "stale", "http", endpoint="http://127.0.0.1:9/")
        await _make_due(settings)
        assert (
            len(
                await facade.store.claim_due_checks(
                    "crashed", utcnow(), limit=5, lease_seconds=300, default_interval=300
                )
            )
            == 1
        )
        service = HealthService(facade, role="connectord serve")
        await service.start()
        try:
            owners = await _column(raw_sql_on(settings), "lease_owner")
            assert "crashed" not in owners.values(), "a previous owner's lease is cleared at once"
        finally:
            await service.stop()


async def test_paused_retired_and_turned_off_connectors_are_not_claimed(
    make_facade: MakeFacade, isolated_settings: Settings, target: CountingTarget
) -> None:
    facade = await make_facade()
    tenant = await _tenant(facade)
    paused, retired, off, on = await _register(facade, tenant, target, 4, "skip")
    await facade.update_connector(paused, tenant, status="disconnected")
    await facade.update_connector(retired, tenant, status="deprecated")
    raw = raw_sql_on(isolated_settings)
    await raw("UPDATE connectors SET check_interval = 0 WHERE id = ?", off)
    await _make_due(isolated_settings)
    claimed = await facade.claim_due_checks("a", 10)
    assert [c.connector.id for c in claimed] == [on]
    await facade.release_checks("a")
    # Parked: due scans stop meeting them; resumed ones are scheduled again.
    await facade.schedule_checks(100)
    due = await _column(raw, "next_check_at")
    assert due[paused] is None
    assert due[retired] is None
    assert due[off] is None
    assert due[on] is not None
    await facade.update_connector(paused, tenant, status="registered")
    await raw("UPDATE connectors SET check_interval = NULL WHERE id = ?", off)
    assert await facade.schedule_checks(100) == 2
    due = await _column(raw, "next_check_at")
    assert due[paused] is not None
    assert due[off] is not None
    assert due[retired] is None


# --- the loop against a real target -------------------------------------------------------


async def test_the_scheduler_checks_on_cadence_and_records_results(
    make_facade: MakeFacade,
    isolated_settings: Settings,
    target: CountingTarget,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    facade = await make_facade(check_interval=0.5)
    tenant = await _tenant(facade)
    token = f"tok-{secrets.token_hex(8)}"
    ids = []
    for i in range(10):
        info = await facade.register_connector(
            tenant,
            f"cadence-{i}",
            "http",
            endpoint=target.url(f"cadence/{i}"),
            config={"auth": {"kind": "bearer", "token": token}},
        )
        ids.append(info.id)
    scheduler = Scheduler(facade, poll=0.05)
    scheduler.start()
    await asyncio.sleep(3.2)
    await scheduler.stop()

    for i in range(10):
        count = len(target.hits[f"cadence/{i}"])
        # First checks within the first interval, then one every 0.5 s: 5 to 7 in 3.2 s.
        assert 5 <= count <= 7, (i, count)
        assert min(target.gaps(f"cadence/{i}")) >= 0.25, target.gaps(f"cadence/{i}")
    assert target.authorizations == {f"Bearer {token}"}, "the secret was opened for the probe"
    recorded = 0
    for i, connector_id in enumerate(ids):
        page = await facade.history(connector_id, tenant, limit=100)
        # A check under way when the scheduler stopped was cut: not recorded.
        assert len(target.hits[f"cadence/{i}"]) - len(page.items) in (0, 1)
        recorded += len(page.items)
        assert all(r.success for r in page.items)
        info = await facade.get_connector(connector_id, tenant)
        assert info is not None
        assert info.status == "connected"
    # A check cut while its result was being written may be recorded without being counted.
    assert 0 <= recorded - scheduler.stats.checks <= len(ids)
    assert scheduler.stats.checks > 50
    # Recorded in the history only: the audit log keeps what people and keys did (docs/health.md).
    audit = await facade.audit(tenant, limit=200)
    assert [e for e in audit.items if e.action == "connector.test"] == []
    await facade.test_connector(ids[0], tenant, actor="key:manual")
    audit = await facade.audit(tenant, limit=200)
    assert [e.actor for e in audit.items if e.action == "connector.test"] == ["key:manual"]
    raw = raw_sql_on(isolated_settings)
    assert set((await _column(raw, "lease_owner")).values()) == {None}
    assert token not in caplog.text


async def test_global_and_tenant_limits_hold(make_facade: MakeFacade, isolated_settings: Settings) -> None:
    slow = await CountingTarget(delay=0.3).start()
    try:
        facade = await make_facade(
            check_interval=60.0, scheduler_concurrency=6, scheduler_tenant_concurrency=2
        )
        for group in ("a", "b", "c", "d"):
            await _register(facade, await _tenant(facade), slow, 8, group)
        await _make_due(isolated_settings)
        scheduler = Scheduler(facade, poll=0.05)
        scheduler.start()
        await asyncio.sleep(2.0)
        await scheduler.stop()
    finally:
        await slow.stop()
    assert slow.max_total == 6, "the global limit is used, never exceeded"
    assert max(slow.max_active.values()) == 2, slow.max_active
    for group in "abcd":  # no tenant starves
        assert sum(len(slow.hits[f"{group}/{i}"]) for i in range(8)) >= 2, slow.hits


async def test_stop_releases_leases_at_once(make_facade: MakeFacade, isolated_settings: Settings) -> None:
    hanging = await CountingTarget(delay=30).start()  # answers long after the test
    try:
        facade = await make_facade(probe_timeout=20.0)
        tenant = await _tenant(facade)
        ids = await _register(facade, tenant, hanging, 3, "hang")
        raw = raw_sql_on(isolated_settings)
        await _make_due(isolated_settings)
        scheduler = Scheduler(facade, poll=0.05, grace=0.5)
        scheduler.start()
        for _ in range(100):
            if sum(len(v) for v in hanging.hits.values()) == 3:
                break
            await asyncio.sleep(0.05)
        assert set((await _column(raw, "lease_owner")).values()) == {scheduler.owner}
        await asyncio.wait_for(scheduler.stop(), timeout=5)  # the grace, not the probes' 20 s
    finally:
        await hanging.stop()
    assert set((await _column(raw, "lease_owner")).values()) == {None}
    due = await _column(raw, "next_check_at")
    assert all(_as_dt(due[c]) <= utcnow() for c in ids), "still due: another replica runs them now"
    for connector_id in ids:
        assert (await facade.history(connector_id, tenant)).items == [], "a cut check is not recorded"


async def test_stop_lets_probes_under_way_finish(
    make_facade: MakeFacade, isolated_settings: Settings
) -> None:
    slow = await CountingTarget(delay=0.4).start()
    try:
        facade = await make_facade(scheduler_tenant_concurrency=2)
        tenant = await _tenant(facade)
        ids = await _register(facade, tenant, slow, 6, "drain")
        await _make_due(isolated_settings)
        scheduler = Scheduler(facade, poll=0.05, grace=3)
        scheduler.start()
        for _ in range(100):
            if sum(len(v) for v in slow.hits.values()) == 2:
                break
            await asyncio.sleep(0.02)
        await scheduler.stop()
    finally:
        await slow.stop()
    # The two probes under way were answered and recorded; the four waiting for the
    # tenant's slots were never sent, and are released for another replica.
    assert sum(len(v) for v in slow.hits.values()) == 2
    recorded = [len((await facade.history(c, tenant)).items) for c in ids]
    assert sorted(recorded) == [0, 0, 0, 0, 1, 1]
    assert set((await _column(raw_sql_on(isolated_settings), "lease_owner")).values()) == {None}


# --- SQLite: one owner ------------------------------------------------------------------


async def test_sqlite_has_one_owner_and_a_waiting_server_takes_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectord.health")
    monkeypatch.setattr(service_module, "LOCK_RETRY", 0.05)
    settings = Settings(data_dir=tmp_path, check_interval=1.0)
    async with ConnectorsFacade(settings=settings) as one, ConnectorsFacade(settings=settings) as two:
        owner = HealthService(one, role="connectord serve")
        await owner.start()
        assert owner.runs
        assert "scheduler: on, interval 1 s, SQLite: this process owns it" in caplog.text
        with pytest.raises(ConflictError, match=r"another process owns the scheduler .*connectord serve"):
            await HealthService(two, role="connectord worker", wait_for_lock=False).start()
        waiting = HealthService(two, role="connectord serve")
        await waiting.start()
        assert not waiting.runs
        assert "SQLite: another process owns it" in caplog.text
        assert waiting.problem() is None, "ready: the scheduler runs, elsewhere"
        await owner.stop()
        for _ in range(100):
            if waiting.runs:
                break
            await asyncio.sleep(0.02)
        assert waiting.runs, "the waiting process took the scheduler over"
        await waiting.stop()


async def test_scheduler_off_runs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connectord.health")
    settings = Settings(data_dir=tmp_path, scheduler="off")
    async with ConnectorsFacade(settings=settings) as facade:
        service = HealthService(facade, role="connectord serve")
        await service.start()
        assert service.scheduler is None
        assert service.problem() is None
        assert "scheduler: off" in caplog.text
        await service.stop()
        assert not (tmp_path / "scheduler.lock").exists()
