"""``last_used_at`` (``docs/use.md``): set by every use (a checkout, a proxied request, a
gateway call) as well as by tests, without a write per use: the facade's
:class:`~connectord.usage.UsageRecorder` coalesces marks into one ``UPDATE`` at most once
a second. The coalescing is asserted through the store's rows and the recorder's
``writes`` counter, not through timing.

Facade tests run on SQLite and PostgreSQL; one test goes through a real server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import pytest

from connectord.errors import StoreError
from connectord.facade import ConnectorsFacade
from connectord.model import ConnectorInfo, utcnow
from connectord.settings import Settings
from connectord.usage import FLUSH_INTERVAL, UsageRecorder
from tests.api.conftest import Server, create_key, create_tenant, register, run_server
from tests.conftest import RawSql

PG_ENDPOINT = "postgresql://postgres@127.0.0.1:5432/test"
#: Long enough that the background flusher never writes during a test that flushes by hand.
HELD = 3600.0


async def _sql(facade: ConnectorsFacade, tenant: str, name: str = "db") -> ConnectorInfo:
    return await facade.register_connector(tenant, name, "sql", PG_ENDPOINT, {"password": "pw"})


async def _stored_last_used(raw_sql: RawSql, connector_id: str) -> object:
    rows = await raw_sql("SELECT last_used_at FROM connectors WHERE id = ?", connector_id)
    return rows[0][0]


async def test_a_checkout_sets_last_used_at_without_a_new_version(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql
) -> None:
    facade.usage.interval = HELD
    made = await _sql(facade, tenant)
    assert made.last_used_at is None
    before = utcnow()
    await facade.checkout(made.id, tenant)
    assert facade.usage.pending == {made.id}
    assert await _stored_last_used(raw_sql, made.id) is None  # not written per use
    assert await facade.usage.flush() == 1
    after = await facade.get_connector(made.id, tenant)
    assert after is not None
    assert after.last_used_at is not None
    assert before <= after.last_used_at <= utcnow()
    # Bookkeeping: no new version (ETags stay valid), no other change.
    assert (after.version, after.updated_at, after.status) == (made.version, made.updated_at, made.status)


async def test_a_test_sets_last_used_at_as_before(facade: ConnectorsFacade, tenant: str) -> None:
    made = await facade.register_connector(tenant, "tcp", "custom", "127.0.0.1:1")
    result = await facade.test_connector(made.id, tenant)
    after = await facade.get_connector(made.id, tenant)
    assert after is not None
    assert after.last_used_at == result.tested_at
    assert facade.usage.writes == 0  # the test writes its own row


async def test_many_uses_in_a_second_make_one_write(
    facade: ConnectorsFacade, tenant: str, raw_sql: RawSql
) -> None:
    facade.usage.interval = HELD
    busy, quiet = await _sql(facade, tenant, "busy"), await _sql(facade, tenant, "quiet")
    for _ in range(25):
        await facade.checkout(busy.id, tenant)
        await facade.use_connector(busy.id, tenant, purpose="proxy")
    await facade.use_connector(quiet.id, tenant, purpose="gateway")
    assert facade.usage.writes == 0
    assert facade.usage.pending == {busy.id, quiet.id}
    assert await _stored_last_used(raw_sql, busy.id) is None

    assert await facade.usage.flush() == 2  # both connectors, in one statement
    assert facade.usage.writes == 1
    assert facade.usage.pending == frozenset()
    stamps = [(await facade.get_connector(c.id, tenant)) for c in (busy, quiet)]
    assert all(s is not None and s.last_used_at is not None for s in stamps)
    assert await facade.usage.flush() == 0  # nothing pending: no write at all
    assert facade.usage.writes == 1


async def test_the_flusher_writes_by_itself(facade: ConnectorsFacade, tenant: str) -> None:
    assert facade.usage.interval == FLUSH_INTERVAL == 1.0
    made = await _sql(facade, tenant)
    for _ in range(20):
        await facade.use_connector(made.id, tenant, purpose="proxy")
    deadline = time.monotonic() + 10
    while facade.usage.writes == 0:
        assert time.monotonic() < deadline, "the flusher never wrote"
        await asyncio.sleep(0.05)
    assert facade.usage.writes == 1
    after = await facade.get_connector(made.id, tenant)
    assert after is not None
    assert after.last_used_at is not None
    assert facade.usage.pending == frozenset()


async def test_a_mark_never_moves_last_used_at_back(facade: ConnectorsFacade, tenant: str) -> None:
    made = await _sql(facade, tenant)
    now = utcnow()
    assert await facade.store.mark_used([made.id], now) == 1
    assert await facade.store.mark_used([made.id], now - timedelta(seconds=5)) == 0
    assert await facade.store.mark_used([made.id], now) == 0
    assert await facade.store.mark_used([made.id], now + timedelta(seconds=1)) == 1
    after = await facade.get_connector(made.id, tenant)
    assert after is not None
    assert after.last_used_at == now + timedelta(seconds=1)
    assert await facade.store.mark_used([], now) == 0


async def test_closing_the_facade_writes_what_is_pending(settings: Settings, tenant: str) -> None:
    async with ConnectorsFacade(settings=settings) as facade:
        facade.usage.interval = HELD
        made = await _sql(facade, tenant)
        await facade.checkout(made.id, tenant)
        assert facade.usage.writes == 0
    async with ConnectorsFacade(settings=settings) as reopened:
        found = await reopened.get_connector(made.id, tenant)
        assert found is not None
        assert found.last_used_at is not None


async def test_a_failed_write_keeps_the_marks_for_the_next_flush() -> None:
    """The recorder alone, with a writer that fails once (the store's failure is raised by
    the writer; no server is involved in this logic)."""
    batches: list[tuple[list[str], datetime]] = []

    async def write(ids: Sequence[str], at: datetime) -> int:
        if not batches:
            batches.append(([], at))
            raise StoreError("the store is unavailable")
        batches.append((list(ids), at))
        return len(ids)

    recorder = UsageRecorder(write, interval=HELD)
    recorder.mark("a")
    recorder.mark("b")
    with pytest.raises(StoreError):
        await recorder.flush()
    assert recorder.pending == {"a", "b"}
    assert recorder.writes == 0
    recorder.mark("c")
    assert await recorder.flush() == 3
    assert batches[-1][0] == ["a", "b", "c"]
    assert recorder.writes == 1
    await recorder.aclose()


# --- through a real server ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on SQLite (the store's side is covered on both backends above)."""
    with run_server("sqlite", tmp_path_factory.mktemp("last-used"), request) as running:
        yield running


def test_a_checkout_over_rest_shows_in_last_used_at(server: Server) -> None:
    tenant = create_tenant(server, "lu")
    db = register(tenant.http, "db", connector_type="sql", endpoint=PG_ENDPOINT, config={"password": "pw"})
    assert db["last_used_at"] is None
    user = server.client(create_key(server, tenant, ["connectors:use"]))
    started = utcnow()
    for _ in range(5):
        assert user.post(f"/api/v1/connectors/{db['id']}/credentials").status_code == 200
    deadline = time.monotonic() + 10
    while (seen := tenant.http.get(f"/api/v1/connectors/{db['id']}").json())["last_used_at"] is None:
        assert time.monotonic() < deadline, "last_used_at was never written"
        time.sleep(0.1)
    assert datetime.fromisoformat(seen["last_used_at"]) >= started
    assert seen["version"] == db["version"]
