""" "Test selected": batches run within the tenant's test limiter, and say why a
connector was not tested."""

from __future__ import annotations

import asyncio
import time

from connectord.api.limits import TestLimiter
from connectord.console.batch import Batches
from connectord.errors import InvalidTransitionError, NotFoundError
from connectord.model import TestResult


async def _finished(batches: Batches, tenant: str, batch_id: str) -> None:
    for _ in range(200):
        batch = batches.get(tenant, batch_id)
        assert batch is not None
        if not batch.running:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the batch did not finish")


async def test_a_batch_waits_for_the_limiter_instead_of_failing() -> None:
    limiter = TestLimiter(rate_per_minute=600, concurrency=1)  # one test at a time per tenant
    running = 0
    most = 0

    async def test(connector_id: str) -> TestResult:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return TestResult(
            connector_id != "c",
            connector_id,
            50,
            None,
            {} if connector_id != "c" else {"error_kind": "refused"},
        )

    batches = Batches(limiter, concurrency=3)
    start = time.monotonic()
    batch = batches.start("t1", [("a", "A"), ("b", "B"), ("c", "C")], test)
    assert (batch.total, batch.done, batch.running) == (3, 0, True)
    await _finished(batches, "t1", batch.id)
    assert most == 1  # the limiter's cap held
    assert time.monotonic() - start >= 1.0  # a refused slot waited as the limiter said
    assert (batch.done, batch.ok, batch.failed) == (3, 2, 1)
    states = {i["connector_id"]: (i["state"], i["error_kind"]) for i in batch.to_dict()["items"]}
    assert states == {"a": ("ok", None), "b": ("ok", None), "c": ("failed", "refused")}
    assert batches.get("another-tenant", batch.id) is None


async def test_a_connector_that_cannot_be_tested_says_why() -> None:
    async def test(connector_id: str) -> TestResult:
        if connector_id == "gone":
            raise NotFoundError("no such connector")
        raise InvalidTransitionError("deprecated")

    batches = Batches(TestLimiter(600, 16))
    batch = batches.start("t", [("gone", "G"), ("old", "O")], test)
    await _finished(batches, "t", batch.id)
    assert [(i.state, i.problem) for i in batch.items] == [
        ("skipped", "no longer exists"),
        ("skipped", "deprecated: tests are refused"),
    ]
    assert batch.failed == 2


async def test_closing_cancels_what_still_runs() -> None:
    started = asyncio.Event()

    async def test(connector_id: str) -> TestResult:
        started.set()
        await asyncio.sleep(30)
        raise AssertionError("not cancelled")

    batches = Batches(TestLimiter(600, 16))
    batch = batches.start("t", [("a", "A")], test)
    await started.wait()
    await batches.close()
    assert not batch.running
    assert batch.items[0].state == "pending"
