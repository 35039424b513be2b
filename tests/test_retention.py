"""History retention on SQLite and PostgreSQL: bounded by count per connector and by age,
pruned in steps of at most one batch each, in the background, one replica at a time."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.health.retention import Retention
from connectord.model import AuditEvent, TestResult, new_id, utcnow
from connectord.settings import Settings


@pytest.fixture
async def facade(isolated_settings: Settings) -> AsyncIterator[ConnectorsFacade]:
    """A facade on a database of its own: retention acts on every tenant."""
    settings = isolated_settings.model_copy(
        update={"history_max_per_connector": 10, "history_max_age_days": 30}
    )
    async with ConnectorsFacade(settings=settings) as started:
        yield started


async def _connector(facade: ConnectorsFacade, tenant: str) -> str:
    info = await facade.register_connector(
        tenant, f"c-{secrets.token_hex(4)}", "http", endpoint="http://127.0.0.1:9/"
    )
    return info.id


async def _history(facade: ConnectorsFacade, tenant: str, connector_id: str, ages: list[float]) -> list[str]:
    """Results tested ``ages`` days ago, oldest first (ids grow with each, as in real life)."""
    ids = []
    for age in sorted(ages, reverse=True):
        at = utcnow() - timedelta(days=age)
        result = TestResult(True, connector_id, 3, None, {}, at)
        audit = AuditEvent(new_id(), tenant, "tests", "connector.test", connector_id, at, {})
        assert await facade.store.record_test(tenant, result, audit, lambda _: {})
        ids.append(audit.id)
    return ids


async def _kept(facade: ConnectorsFacade, tenant: str, connector_id: str) -> list[str]:
    rows = await facade.store.history(tenant, connector_id, limit=1000)
    return [result_id for result_id, _ in rows]


def _record_steps(facade: ConnectorsFacade, name: str) -> list[Any]:
    """Wrap one of the facade's pruning steps to see what each step did."""
    steps: list[Any] = []
    step = getattr(facade, name)

    async def recorded(*args: Any) -> Any:
        outcome = await step(*args)
        steps.append(outcome)
        return outcome

    setattr(facade, name, recorded)
    return steps


async def test_each_connector_keeps_its_newest_results_in_bounded_steps(facade: ConnectorsFacade) -> None:
    tenant, _ = await Admin(facade).create_tenant("retained")
    other, _ = await Admin(facade).create_tenant("other")
    many, few, some = [await _connector(facade, tenant.id) for _ in range(3)]
    foreign = await _connector(facade, other.id)
    made = {
        many: await _history(facade, tenant.id, many, [i / 100 for i in range(25)]),
        few: await _history(facade, tenant.id, few, [i / 100 for i in range(5)]),
        some: await _history(facade, tenant.id, some, [i / 100 for i in range(12)]),
    }
    made[foreign] = await _history(facade, other.id, foreign, [i / 100 for i in range(14)])
    steps = _record_steps(facade, "prune_history_beyond")
    retention = Retention(facade, batch=7, page=2, pause=0)
    assert await retention.run_once() == 15 + 2 + 4
    assert all(deleted <= 7 for deleted, _ in steps), steps
    assert len(steps) > 3, "several short steps, not one long transaction"
    assert steps[-1][1] is None, "the walk ends"
    for connector_id, ids in made.items():
        owner = other.id if connector_id == foreign else tenant.id
        assert await _kept(facade, owner, connector_id) == ids[-10:][::-1], "the newest ten, newest first"
    assert await retention.run_once() == 0


async def test_results_past_the_age_go_in_batches(facade: ConnectorsFacade) -> None:
    tenant, _ = await Admin(facade).create_tenant("aged")
    connector_id = await _connector(facade, tenant.id)
    ids = await _history(facade, tenant.id, connector_id, [40, 39, 38, 35, 33, 31, 31, 30.5, 29, 2, 1])
    steps = _record_steps(facade, "prune_history_before")
    assert await Retention(facade, batch=3, pause=0).run_once() == 8
    assert steps == [3, 3, 2]
    assert await _kept(facade, tenant.id, connector_id) == ids[-3:][::-1]


async def test_retention_prunes_in_the_background(facade: ConnectorsFacade) -> None:
    tenant, _ = await Admin(facade).create_tenant("background")
    connector_id = await _connector(facade, tenant.id)
    ids = await _history(facade, tenant.id, connector_id, [60] + [i / 10 for i in range(15)])
    retention = Retention(facade, every=0.05, first_after=0, batch=4, pause=0)
    retention.start()
    try:
        for _ in range(200):
            if len(await _kept(facade, tenant.id, connector_id)) == 10:
                break
            await asyncio.sleep(0.05)
    finally:
        await retention.stop()
    assert await _kept(facade, tenant.id, connector_id) == ids[-10:][::-1]
    assert retention.deleted == 6


async def test_no_bounds_no_pruning(isolated_settings: Settings) -> None:
    settings = isolated_settings.model_copy(
        update={"history_max_per_connector": 0, "history_max_age_days": 0}
    )
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("unbounded")
        connector_id = await _connector(facade, tenant.id)
        await _history(facade, tenant.id, connector_id, [400, 3, 2, 1])
        assert await Retention(facade).run_once() == 0
        assert len(await _kept(facade, tenant.id, connector_id)) == 4


async def test_one_replica_prunes_at_a_time(facade: ConnectorsFacade, backend: str) -> None:
    other = ConnectorsFacade(settings=facade.settings)  # a second process on the same database
    async with other:
        nested: list[int | None] = []

        async def work() -> int:
            nested.append(await other.run_exclusive("connectord.retention", _one))
            return 1

        assert await facade.run_exclusive("connectord.retention", work) == 1
        # PostgreSQL: an advisory lock keeps the second out; SQLite has one owner anyway.
        assert nested == ([None] if backend == "postgres" else [1])
        assert await other.run_exclusive("connectord.retention", _one) == 1, "released after the work"


async def _one() -> int:
    return 1
