"""Webhooks through the facade and the delivery worker, on SQLite and PostgreSQL, to a real
receiver on loopback: the resource (secret shown once, sealed; checks; tenancy), the connector
events in the outbox, and delivery (signatures the spec's reference code verifies, retries with
backoff, giving up, the egress policy, per-connector order, expired leases, two workers at
once, a server restarted mid-delivery).

The worker is driven with ``run_once`` so each step is observed; the loop that ``serve`` runs
is exercised by the API tests and the restart test here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.errors import NotFoundError, ValidationError, VersionConflictError
from connectord.facade import ConnectorsFacade
from connectord.model import DeliveryInfo, WebhookInfo
from connectord.notify.delivery import DeliveryWorker, backoff_delay
from connectord.settings import Settings
from tests.api.conftest import run_server
from tests.cli_server import SCRIPT
from tests.conftest import PG_ADMIN_URL, RawSql, _psql
from tests.webhook_receiver import Received, Receiver

LOOPBACK = ["127.0.0.0/8"]
FAST = {"egress_allow": LOOPBACK, "webhook_backoff": 0.05, "webhook_max_attempts": 4, "webhook_timeout": 3}


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """A PostgreSQL database for this module: its workers claim across tenants, and the
    session's API servers (sharing the session's database) would take part in its deliveries."""
    name = f"connectord_webhooks_{secrets.token_hex(4)}"
    _psql(f"CREATE DATABASE {name}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, secret_key_value: str) -> Settings:
    """The shared ``settings``, on this module's own PostgreSQL database."""
    if backend == "postgres":
        url = request.getfixturevalue("module_pg_url")
        return Settings(data_dir=tmp_path, database_url=url, secret_key=secret_key_value)
    return Settings(data_dir=tmp_path)


@pytest.fixture
async def hooks(settings: Settings) -> AsyncIterator[ConnectorsFacade]:
    """A facade whose egress policy opens loopback (the receiver) and whose retries are fast."""
    async with ConnectorsFacade(settings=settings.model_copy(update=FAST)) as facade:
        yield facade


@pytest.fixture
async def tenant_id(settings: Settings) -> AsyncIterator[str]:
    """A fresh tenant id (library callers may use their own); its webhooks are deleted after
    the test: workers claim across tenants, and a later test's worker should not meet this
    test's leftover deliveries (PostgreSQL is shared by the session)."""
    tenant = f"wh-{secrets.token_hex(6)}"
    yield tenant
    async with ConnectorsFacade(settings=settings) as facade:
        for hook in (await facade.list_webhooks(tenant)).items:
            await facade.delete_webhook(hook.id, tenant)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that answers 200."""
    with Receiver() as running:
        yield running


async def deliveries(facade: ConnectorsFacade, hook: WebhookInfo) -> list[DeliveryInfo]:
    """The webhook's deliveries, oldest first."""
    return list(reversed((await facade.webhook_deliveries(hook.id, hook.tenant_id, limit=1000)).items))


async def until(worker: DeliveryWorker, done: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Run the worker batch after batch until ``done()`` holds."""
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, "the deliveries did not finish in time"
        await worker.run_once()
        await asyncio.sleep(0.02)


def settled(facade: ConnectorsFacade, hook: WebhookInfo, count: int) -> Callable[[], Awaitable[bool]]:
    """``count`` deliveries exist and none is pending any more."""

    async def check() -> bool:
        found = await deliveries(facade, hook)
        return len(found) == count and all(d.status != "pending" for d in found)

    return check


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the resource ------------------------------------------------------------------------------


async def test_the_signing_secret_is_shown_once_and_stored_sealed(
    hooks: ConnectorsFacade, tenant_id: str, raw_sql: RawSql, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook, secret = await hooks.create_webhook(tenant_id, "https://127.0.0.1:9/in", description="ops")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert hook.events == [
        "connector.created",
        "connector.updated",
        "connector.deleted",
        "connector.down",
        "connector.recovered",
    ]
    assert (hook.enabled, hook.version, hook.description) == (True, 1, "ops")

    read = await hooks.get_webhook(hook.id, tenant_id)
    listed = (await hooks.list_webhooks(tenant_id)).items
    assert read == hook
    assert listed == [hook]
    shown = json.dumps([read.to_dict() if read else None, [h.to_dict() for h in listed]])
    assert "secret" not in shown
    assert secret not in shown

    [(key_id, sealed)] = await raw_sql("SELECT key_id, secret FROM webhooks WHERE id = ?", hook.id)
    assert key_id == hooks.keyring.primary_id
    raw = secret.removeprefix("whsec_").encode()
    assert secret.encode() not in bytes(sealed)
    assert raw not in bytes(sealed)
    audit = json.dumps([e.to_dict() for e in (await hooks.audit(tenant_id)).items])
    assert "webhook.create" in audit
    assert secret not in audit
    assert secret not in caplog.text
    assert raw.decode() not in caplog.text


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1:9/in", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("127.0.0.1:9/in", "http:// or https://"),
        ("https://user:pw@127.0.0.1:9/in", "credentials"),
        ("https:///in", "host"),
        ("https://127.0.0.1:99999/in", "port"),
        ("https://127.0.0.1:9/in#top", "fragment"),
        ("https://127.0.0.1:9/a b", "spaces"),
        ("", "required"),
        ("https://127.0.0.1:9/" + "a" * 2048, "longer"),
    ],
)
async def test_a_bad_url_is_refused_with_a_field_error(
    hooks: ConnectorsFacade, tenant_id: str, url: str, says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await hooks.create_webhook(tenant_id, url)
    [error] = caught.value.errors
    assert error.loc == ("url",)
    assert says in error.msg
    assert (await hooks.list_webhooks(tenant_id)).items == []


@pytest.mark.parametrize(
    ("events", "loc"),
    [([], ("events",)), (["connector.nope"], ("events", 0)), ("connector.created", ("events",))],
)
async def test_bad_event_types_are_refused(
    hooks: ConnectorsFacade, tenant_id: str, events: Any, loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        await hooks.create_webhook(tenant_id, "https://127.0.0.1:9/in", events)
    assert [e.loc for e in caught.value.errors] == [loc]
    assert (await hooks.list_webhooks(tenant_id)).items == []


async def test_update_changes_the_fields_given_and_a_bad_one_changes_nothing(
    hooks: ConnectorsFacade, tenant_id: str
) -> None:
    hook, _ = await hooks.create_webhook(tenant_id, "https://127.0.0.1:9/in", ["connector.down"])
    changed = await hooks.update_webhook(
        hook.id, tenant_id, events=["connector.down", "connector.down", "connector.recovered"], enabled=False
    )
    assert changed is not None
    assert changed.events == ["connector.down", "connector.recovered"]
    assert (changed.enabled, changed.url, changed.version) == (False, hook.url, 2)
    assert changed.updated_at is not None
    assert await hooks.update_webhook(hook.id, tenant_id, enabled=False) == changed  # nothing to change
    with pytest.raises(ValidationError):
        await hooks.update_webhook(hook.id, tenant_id, url="ftp://127.0.0.1:9/", description="x")
    with pytest.raises(VersionConflictError):
        await hooks.update_webhook(hook.id, tenant_id, description="x", expected_version=1)
    assert await hooks.get_webhook(hook.id, tenant_id) == changed


async def test_another_tenants_webhook_does_not_exist(hooks: ConnectorsFacade, tenant_id: str) -> None:
    hook, _ = await hooks.create_webhook(tenant_id, "https://127.0.0.1:9/in")
    other = f"other-{secrets.token_hex(4)}"
    assert await hooks.get_webhook(hook.id, other) is None
    assert await hooks.update_webhook(hook.id, other, enabled=False) is None
    assert not await hooks.delete_webhook(hook.id, other)
    with pytest.raises(NotFoundError):
        await hooks.webhook_deliveries(hook.id, other)
    assert (await hooks.list_webhooks(other)).items == []
    assert await hooks.get_webhook("not-an-id", tenant_id) is None
    assert await hooks.get_webhook(hook.id, tenant_id) == hook  # untouched
    assert await hooks.delete_webhook(hook.id, tenant_id)
    assert await hooks.get_webhook(hook.id, tenant_id) is None


async def test_webhook_list_pages(hooks: ConnectorsFacade, tenant_id: str) -> None:
    made = [(await hooks.create_webhook(tenant_id, f"https://127.0.0.{i + 1}:9/"))[0] for i in range(5)]
    first = await hooks.list_webhooks(tenant_id, limit=3)
    assert first.next_cursor is not None
    second = await hooks.list_webhooks(tenant_id, limit=3, cursor=first.next_cursor)
    assert second.next_cursor is None
    assert first.items + second.items == made


# --- the events --------------------------------------------------------------------------------


async def test_connector_changes_put_public_events_in_the_outbox(
    hooks: ConnectorsFacade, tenant_id: str, raw_sql: RawSql, secret_value: str
) -> None:
    start = await hooks.last_event_seq(tenant_id)
    info = await hooks.register_connector(
        tenant_id, "db", "custom", endpoint=f"tcp://app:{secret_value}@127.0.0.1:9", metadata={"team": "a"}
    )
    updated = await hooks.update_connector(info.id, tenant_id, metadata={"team": "b"})
    assert updated is not None
    assert await hooks.delete_connector(info.id, tenant_id)
    assert not await hooks.delete_connector(info.id, tenant_id)  # nothing left: no event

    found = await hooks.events_after(tenant_id, start)
    assert [str(e.type) for e in found] == ["connector.created", "connector.updated", "connector.deleted"]
    seqs = [e.seq or 0 for e in found]
    assert seqs == sorted(seqs)
    assert seqs[0] > start
    created, changed, deleted = (e.data for e in found)
    assert created["connector"] == info.to_dict()
    assert changed["connector"] == updated.to_dict()
    assert changed["changed"] == ["metadata"]
    assert deleted["connector"] == updated.to_dict()
    assert created["connector"]["secret_fields"] == ["password"]
    assert {e.connector_id for e in found} == {info.id}
    assert found[0].payload() == {
        "type": "connector.created",
        "timestamp": found[0].at.isoformat(),
        "data": created,
    }
    stored = await raw_sql("SELECT payload FROM events WHERE tenant_id = ?", tenant_id)
    assert len(stored) == 3
    assert secret_value not in json.dumps(stored)
    assert await hooks.events_after(tenant_id, seqs[-1]) == []
    assert await hooks.events_after(f"other-{secrets.token_hex(4)}", 0) == []
    assert await hooks.last_event_seq(tenant_id) == seqs[-1]


async def test_only_subscribed_types_make_deliveries(
    hooks: ConnectorsFacade, tenant_id: str, receiver: Receiver
) -> None:
    hook, _ = await hooks.create_webhook(tenant_id, receiver.url, ["connector.deleted"])
    info = await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
    await hooks.update_connector(info.id, tenant_id, metadata={"x": 1})
    assert await deliveries(hooks, hook) == []
    await hooks.delete_connector(info.id, tenant_id)
    assert [d.event_type for d in await deliveries(hooks, hook)] == ["connector.deleted"]


# --- delivery ----------------------------------------------------------------------------------


def _hmac_signature(secret: str, received: Received) -> str:
    """The spec's signature computed here, independently of the package the server signs with."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{received.webhook_id}.{received.headers['webhook-timestamp']}.{received.body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


async def test_a_delivery_is_signed_as_the_spec_verifies(
    hooks: ConnectorsFacade, tenant_id: str, receiver: Receiver, secret_value: str
) -> None:
    hook, secret = await hooks.create_webhook(tenant_id, receiver.url)
    info = await hooks.register_connector(
        tenant_id,
        "api",
        "http",
        endpoint="http://127.0.0.1:9/",
        config={"auth": {"kind": "bearer", "token": secret_value}},
    )
    worker = DeliveryWorker(hooks)
    await until(worker, settled(hooks, hook, 1))

    [received] = receiver.received()
    payload = received.verify(secret)  # the Standard Webhooks reference verification
    assert received.headers["webhook-signature"] == _hmac_signature(secret, received)
    [event] = await hooks.events_after(tenant_id, 0)
    assert received.webhook_id == event.id
    assert received.webhook_id.startswith("msg_")
    assert payload == event.payload()
    assert payload["data"]["connector"] == info.to_dict()
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
    assert received.headers["content-type"] == "application/json"
    assert secret_value not in received.body
    with pytest.raises(Exception, match="signature"):
        received.verify("whsec_" + base64.b64encode(b"x" * 32).decode())  # another secret fails

    [delivery] = await deliveries(hooks, hook)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert delivery.event_id == event.id
    assert delivery.delivered_at is not None
    assert secret not in json.dumps(delivery.to_dict())


async def test_a_500_is_retried_with_backoff_until_delivered(hooks: ConnectorsFacade, tenant_id: str) -> None:
    with Receiver(lambda received, n: 500 if n <= 2 else 200) as receiver:
        hook, secret = await hooks.create_webhook(tenant_id, receiver.url)
        await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
        await until(DeliveryWorker(hooks), settled(hooks, hook, 1))
        got = receiver.received()
    assert len(got) == 3
    assert len({r.webhook_id for r in got}) == 1  # the same message, retried
    assert all(r.verify(secret) == got[0].payload for r in got)
    # Each wait is at least half its step: 0.05 s, then 0.1 s (jitter takes up to half away).
    assert got[1].at - got[0].at >= 0.025
    assert got[2].at - got[1].at >= 0.05
    [delivery] = await deliveries(hooks, hook)
    assert (delivery.status, delivery.attempts, delivery.last_status, delivery.last_error) == (
        "delivered",
        3,
        200,
        None,
    )


async def test_delivery_gives_up_after_the_last_attempt(hooks: ConnectorsFacade, tenant_id: str) -> None:
    with Receiver(lambda received, n: 503) as receiver:
        hook, _ = await hooks.create_webhook(tenant_id, receiver.url)
        await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
        await until(DeliveryWorker(hooks), settled(hooks, hook, 1))
        assert len(receiver.received()) == 4  # webhook_max_attempts
    [delivery] = await deliveries(hooks, hook)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 4, 503)
    assert delivery.last_error == "the receiver answered HTTP 503"


async def test_a_refused_connection_is_retried(hooks: ConnectorsFacade, tenant_id: str) -> None:
    hook, _ = await hooks.create_webhook(tenant_id, f"http://127.0.0.1:{free_port()}/in")
    await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
    await until(DeliveryWorker(hooks), settled(hooks, hook, 1))
    [delivery] = await deliveries(hooks, hook)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 4, None)
    assert delivery.last_error is not None
    assert "refused" in delivery.last_error


async def test_a_4xx_is_not_retried(hooks: ConnectorsFacade, tenant_id: str) -> None:
    with Receiver(lambda received, n: 400) as receiver:
        hook, _ = await hooks.create_webhook(tenant_id, receiver.url)
        await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
        await until(DeliveryWorker(hooks), settled(hooks, hook, 1))
        assert len(receiver.received()) == 1
    [delivery] = await deliveries(hooks, hook)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 1, 400)


async def test_an_egress_denied_url_is_refused_at_delivery_and_logged(
    settings: Settings, tenant_id: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver listens on loopback, which the default egress policy denies: registering the
    webhook succeeds (a name can resolve differently tomorrow), delivering it is refused."""
    caplog.set_level(logging.INFO, logger="connectord.webhooks")
    async with ConnectorsFacade(settings=settings.model_copy(update={"webhook_backoff": 0.05})) as facade:
        hook, secret = await facade.create_webhook(tenant_id, receiver.url)
        await facade.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
        await until(DeliveryWorker(facade), settled(facade, hook, 1))
        [delivery] = await deliveries(facade, hook)
    assert receiver.received() == []
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 1, None)
    assert delivery.last_error is not None
    assert "egress policy" in delivery.last_error
    assert "loopback" in delivery.last_error
    [line] = [r for r in caplog.records if "egress policy" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert line.__dict__["webhook_id"] == hook.id
    assert line.__dict__["error_kind"] == "egress_denied"
    assert secret not in caplog.text


async def test_one_connectors_events_arrive_in_order(hooks: ConnectorsFacade, tenant_id: str) -> None:
    """The first delivery of connector A fails twice: A's later events wait for it, B's do not."""
    failures = {"left": 2}

    def answer(received: Received, n: int) -> int:
        data = received.payload["data"]["connector"]
        if data["name"] == "a" and received.payload["type"] == "connector.created" and failures["left"]:
            failures["left"] -= 1
            return 500
        return 200

    with Receiver(answer) as receiver:
        hook, _ = await hooks.create_webhook(tenant_id, receiver.url)
        a = await hooks.register_connector(tenant_id, "a", "custom", endpoint="127.0.0.1:9")
        b = await hooks.register_connector(tenant_id, "b", "custom", endpoint="127.0.0.1:9")
        for i in range(3):
            await hooks.update_connector(a.id, tenant_id, metadata={"i": i})
            await hooks.update_connector(b.id, tenant_id, metadata={"i": i})
        await hooks.delete_connector(a.id, tenant_id)
        await until(DeliveryWorker(hooks), settled(hooks, hook, 9))
        got = receiver.received()

    events = await hooks.events_after(tenant_id, 0)
    order = {e.id: e.seq for e in events}
    for connector in (a, b):
        # In arrival order, a later event never comes before (or between the retries of) an
        # earlier one: it was sent only once the earlier one was taken.
        ids = [r.webhook_id for r in got if r.payload["data"]["connector"]["id"] == connector.id]
        assert ids == sorted(ids, key=lambda i: order[i])
        assert len(set(ids)) == (5 if connector is a else 4)
    a_created = [r.at for r in got if r.payload["data"]["connector"]["id"] == a.id][:3]
    assert len({r.webhook_id for r in got if r.at <= a_created[2]}) > 1
    b_first = next(r.at for r in got if r.payload["data"]["connector"]["id"] == b.id)
    assert b_first < a_created[2]  # B did not wait for A's retries
    assert all(d.status == "delivered" for d in await deliveries(hooks, hook))


async def test_a_disabled_webhook_holds_its_deliveries(
    hooks: ConnectorsFacade, tenant_id: str, receiver: Receiver
) -> None:
    hook, _ = await hooks.create_webhook(tenant_id, receiver.url)
    await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
    await hooks.update_webhook(hook.id, tenant_id, enabled=False)
    worker = DeliveryWorker(hooks)
    assert await worker.run_once() == 0
    info = await hooks.register_connector(tenant_id, "db2", "custom", endpoint="127.0.0.1:9")
    assert [d.status for d in await deliveries(hooks, hook)] == ["pending"]  # none made while disabled
    await hooks.update_webhook(hook.id, tenant_id, enabled=True)
    await until(worker, settled(hooks, hook, 1))
    assert [r.payload["data"]["connector"]["name"] for r in receiver.received()] == ["db"]
    assert info.name == "db2"


async def test_a_lease_that_expires_is_taken_over(
    hooks: ConnectorsFacade, tenant_id: str, receiver: Receiver
) -> None:
    """A worker that claimed a delivery and died (it never finishes): the delivery waits for
    the lease to expire, then another worker sends it; the dead one's late answer is refused."""
    hook, _ = await hooks.create_webhook(tenant_id, receiver.url)
    await hooks.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
    [claimed] = [c for c in await hooks.claim_webhook_deliveries("dead", 16, 0.5) if c.tenant_id == tenant_id]
    worker = DeliveryWorker(hooks)
    assert await worker.run_once() == 0
    await asyncio.sleep(0.6)
    await until(worker, settled(hooks, hook, 1))
    [delivery] = await deliveries(hooks, hook)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert len(receiver.received()) == 1
    assert not await hooks.finish_webhook_delivery(claimed, "dead", status="failed")


async def test_two_workers_never_send_a_delivery_twice(
    settings: Settings, tenant_id: str, receiver: Receiver
) -> None:
    """Two facades (two connection pools, as two replicas have) drain one outbox at once."""
    fast = settings.model_copy(update=FAST)
    async with ConnectorsFacade(settings=fast) as one, ConnectorsFacade(settings=fast) as two:
        hook, _ = await one.create_webhook(tenant_id, receiver.url)
        for i in range(40):
            await one.register_connector(tenant_id, f"c{i}", "custom", endpoint="127.0.0.1:9")
        workers = [DeliveryWorker(one), DeliveryWorker(two)]
        done = settled(one, hook, 40)

        async def drain(worker: DeliveryWorker) -> int:
            sent = 0
            while not await done():
                sent += await worker.run_once()
                await asyncio.sleep(0.01)  # SQLite's reads never yield: let the other worker run
            return sent

        shares = await asyncio.wait_for(asyncio.gather(*(drain(w) for w in workers)), 30)
    ids = [r.webhook_id for r in receiver.received()]
    assert len(ids) == 40
    assert len(set(ids)) == 40
    assert sum(shares) == 40


async def test_stop_releases_the_leases_at_once(hooks: ConnectorsFacade, tenant_id: str) -> None:
    """A worker stopping mid-delivery (the receiver hangs) lets another send at once, without
    waiting for its lease to expire."""

    def answer(received: Received, n: int) -> int:
        if n == 1:
            time.sleep(1.0)  # the first attempt hangs past the stop's bound
        return 200

    settings = hooks.settings.model_copy(update={"webhook_timeout": 0.5})
    async with ConnectorsFacade(settings=settings) as facade:
        with Receiver(answer) as receiver:
            hook, _ = await facade.create_webhook(tenant_id, receiver.url)
            await facade.register_connector(tenant_id, "db", "custom", endpoint="127.0.0.1:9")
            first = DeliveryWorker(facade)
            first.start()
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) == 1)
            await first.stop()
            second = DeliveryWorker(facade)
            assert second.lease_seconds > 5  # its own lease would hold far longer than this test
            await until(second, settled(facade, hook, 1), within=5)
            assert len(receiver.received()) == 2


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    for attempts, step in [(1, 10.0), (2, 20.0), (5, 160.0), (40, 3600.0)]:
        delays = [backoff_delay(attempts, 10.0) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert backoff_delay(1, 10.0, retry_after=120) == 120
    assert backoff_delay(1, 10.0, retry_after=10**9) == 3600


# --- outages ------------------------------------------------------------------------------------


async def test_failing_threshold_times_sends_one_down_then_one_recovered(
    settings: Settings, tenant_id: str, receiver: Receiver
) -> None:
    update = {**FAST, "failure_threshold": 2}
    async with ConnectorsFacade(settings=settings.model_copy(update=update)) as facade:
        hook, secret = await facade.create_webhook(
            tenant_id, receiver.url, ["connector.down", "connector.recovered"]
        )
        port = free_port()
        info = await facade.register_connector(tenant_id, "db", "custom", endpoint=f"127.0.0.1:{port}")
        for _ in range(4):  # the 2nd failure in a row is the outage; the 3rd and 4th add nothing
            assert not (await facade.test_connector(info.id, tenant_id)).success
        worker = DeliveryWorker(facade)
        await until(worker, settled(facade, hook, 1))
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        try:
            assert (await facade.test_connector(info.id, tenant_id)).success
            assert (await facade.test_connector(info.id, tenant_id)).success
        finally:
            server.close()
            await server.wait_closed()
        await until(worker, settled(facade, hook, 2))
    got = [r.verify(secret) for r in receiver.received()]
    assert [p["type"] for p in got] == ["connector.down", "connector.recovered"]
    down, recovered = (p["data"] for p in got)
    assert down["connector"]["id"] == info.id
    assert down["consecutive_failures"] == 2
    assert down["error_kind"] == "refused"
    assert recovered["down_since"] is not None


# --- a real server restarted mid-delivery -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_server_killed_mid_delivery_loses_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``connectord serve`` delivers to a receiver that hangs on the first request; the server
    is killed (SIGKILL) holding that lease with the rest of the outbox waiting. A new server on
    the same store sends everything once the lease expires, one connector's events in order."""
    phase: dict[str, Any] = {"now": "refuse", "hung": 0, "hung_id": None}

    def answer(received: Received, n: int) -> int:
        if phase["now"] == "refuse":  # while the test fills the outbox: retried later
            return 500
        if phase["now"] == "hang":
            phase["hung"] += 1
            phase["hung_id"] = phase["hung_id"] or received.webhook_id
            while phase["now"] == "hang":
                time.sleep(0.05)
        return 200

    env = {"CONNECTORD_WEBHOOK_TIMEOUT": "1", "CONNECTORD_WEBHOOK_BACKOFF": "0.05"}
    env |= {"CONNECTORD_WEBHOOK_POLL_INTERVAL": "0.1", "CONNECTORD_WEBHOOK_MAX_ATTEMPTS": "30"}
    with Receiver(answer) as receiver:
        with run_server(backend, tmp_path / "data", request, **env) as first:
            name = f"restart-{secrets.token_hex(4)}"
            tenant = first.admin().post("/api/v1/tenants", json={"name": name}).json()
            http = first.client(tenant["api_key"])
            created = http.post("/api/v1/webhooks", json={"url": receiver.url}).json()
            body = {"name": "a", "connector_type": "custom", "endpoint": "127.0.0.1:9"}
            a = http.post("/api/v1/connectors", json=body).json()["id"]
            for i in range(3):
                assert http.put(f"/api/v1/connectors/{a}", json={"metadata": {"i": i}}).status_code == 200
            http.post("/api/v1/connectors", json={**body, "name": "b"})
            phase["now"] = "hang"  # the next attempt hangs: the kill comes within it
            receiver.wait_for(lambda got: phase["hung"] >= 1)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
        phase["now"] = "answer"
        with run_server(backend, tmp_path / "data", request, **env) as second:
            got = receiver.wait_for(lambda got: len({r.webhook_id for r in got}) == 5, timeout=30)
            http = second.client(tenant["api_key"])
            deadline = time.monotonic() + 10
            while True:  # the last answer is recorded just after the receiver sent it
                items = http.get(f"/api/v1/webhooks/{created['id']}/deliveries").json()["items"]
                if [d["status"] for d in items] == ["delivered"] * 5 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert [d["status"] for d in items] == ["delivered"] * 5
    payloads = [r.verify(created["secret"]) for r in got]
    # The delivery in flight at the kill was sent again by the second server (at least once).
    assert [r.webhook_id for r in got].count(phase["hung_id"]) >= 2
    mine = [p["data"]["connector"] for p in payloads if p["data"]["connector"]["id"] == a]
    versions = [c["version"] for c in mine]
    assert sorted(set(versions)) == [1, 2, 3, 4]
    assert versions == sorted(versions)  # a's events in order, across the restart


def test_admin_rotation_reseals_webhook_secrets(tmp_path: Path) -> None:
    """Rotating the key ring re-encrypts signing secrets too, and keeps working keys."""

    async def run() -> None:
        settings = Settings(data_dir=tmp_path, **FAST)
        async with ConnectorsFacade(settings=settings) as facade:
            tenant, _ = await Admin(facade).create_tenant("rot")
            hook, secret = await facade.create_webhook(tenant.id, "https://127.0.0.1:9/in")
            old_key = facade.keyring.primary_id
            report = await Admin(facade).rotate_secrets(new_key=True)
            assert report.reencrypted == 1
            assert old_key in report.dropped_key_ids
            [(_, sealed)] = await facade.store.list_webhook_secrets(tenant.id)
            assert sealed.key_id == facade.keyring.primary_id != old_key
            from connectord.notify.webhooks import open_secret

            assert open_secret(facade.keyring, sealed, tenant.id, hook.id) == secret

    asyncio.run(run())


def test_connectord_worker_delivers_webhooks_too(tmp_path: Path) -> None:
    """``connectord worker`` (no HTTP) sends the outbox as ``serve`` does, and stops on SIGTERM."""
    settings = Settings(data_dir=tmp_path, **FAST)

    async def fill(url: str) -> str:
        async with ConnectorsFacade(settings=settings) as facade:
            _, secret = await facade.create_webhook("acme", url, ["connector.created"])
            await facade.register_connector("acme", "db", "custom", endpoint="127.0.0.1:9")
            return secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    env |= {"CONNECTORD_DATA_DIR": str(tmp_path), "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8"}
    env |= {"CONNECTORD_WEBHOOK_POLL_INTERVAL": "0.1"}
    with Receiver() as receiver:
        secret = asyncio.run(fill(receiver.url))
        worker = subprocess.Popen(
            [SCRIPT, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            [received] = receiver.wait_for(lambda got: len(got) == 1, timeout=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=20)[0].decode()
    assert received.verify(secret)["data"]["connector"]["name"] == "db"
    assert worker.returncode == 0, output
    assert "webhook delivery: on" in output
    assert secret not in output
