""" "Test selected": the connectors a person ticked on the list, tested in the background
while the page shows their progress.

A batch lives in this process's memory for an hour after it ends (its results
are recorded in each connector's history like any test, so nothing is lost when
it is forgotten). It runs a few tests at once and keeps within the tenant's test
rate: a test the rate limiter refuses waits as long as the limiter says, then
tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectord.errors import ConnectordError, InvalidTransitionError, NotFoundError, RateLimitedError
from connectord.model import TestResult, new_id

logger = logging.getLogger("connectord.console")

#: The most connectors one batch tests (a page of the list).
MAX_SELECTED = 200
#: Tests of one batch running at once.
CONCURRENCY = 8
#: How long a finished batch can still be looked at (seconds).
KEEP_SECONDS = 3600.0
#: The most batches kept; beyond, the oldest finished ones are forgotten.
MAX_BATCHES = 1000
#: The longest a batch waits for the rate limiter in all, per test (seconds).
MAX_WAIT_SECONDS = 120.0


class Limiter(Protocol):
    """The API's per-tenant test limiter (``connectord.api.limits.TestLimiter``)."""

    def slot(self, tenant_id: str, cost: int = 1) -> AbstractAsyncContextManager[None]:
        """Hold one test slot of the tenant, or raise :class:`RateLimitedError`."""


Test = Callable[[str], Awaitable[TestResult]]


@dataclass(slots=True)
class BatchItem:
    """One selected connector and, once tested, its result (or why it was not tested)."""

    connector_id: str
    name: str
    result: TestResult | None = None
    #: Why there is no result: the connector was deleted, is deprecated...
    problem: str | None = None

    @property
    def state(self) -> str:
        """``pending``, ``ok``, ``failed`` or ``skipped``."""
        if self.result is not None:
            return "ok" if self.result.success else "failed"
        return "skipped" if self.problem is not None else "pending"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the progress page's script."""
        result = self.result
        return {
            "connector_id": self.connector_id,
            "name": self.name,
            "state": self.state,
            "latency_ms": result.latency_ms if result is not None else None,
            "error_kind": result.error_kind if result is not None else None,
            "error": result.error if result is not None else self.problem,
        }


@dataclass(slots=True)
class Batch:
    """A batch of tests for one tenant."""

    id: str
    tenant_id: str
    items: list[BatchItem]
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def total(self) -> int:
        """Connectors selected."""
        return len(self.items)

    @property
    def done(self) -> int:
        """Connectors tested (or skipped) so far."""
        return sum(1 for i in self.items if i.state != "pending")

    @property
    def ok(self) -> int:
        """Tests that succeeded."""
        return sum(1 for i in self.items if i.state == "ok")

    @property
    def failed(self) -> int:
        """Tests that failed or could not run."""
        return sum(1 for i in self.items if i.state in ("failed", "skipped"))

    @property
    def running(self) -> bool:
        """Whether tests are still to come."""
        return self.finished is None

    @property
    def seconds(self) -> float:
        """Time taken so far (or in all)."""
        return (self.finished or time.monotonic()) - self.started

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the progress page's script."""
        return {
            "id": self.id,
            "total": self.total,
            "done": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "running": self.running,
            "seconds": round(self.seconds, 2),
            "items": [i.to_dict() for i in self.items],
        }


class Batches:
    """The batches of this process, oldest first."""

    def __init__(self, limiter: Limiter, *, concurrency: int = CONCURRENCY) -> None:
        self.limiter = limiter
        self.concurrency = concurrency
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, tenant_id: str, selected: list[tuple[str, str]], test: Test) -> Batch:
        """Start testing ``selected`` (``(id, name)`` pairs) with ``test``; the batch at once."""
        self._forget_old()
        batch = Batch(new_id(), tenant_id, [BatchItem(i, n) for i, n in selected[:MAX_SELECTED]])
        self._batches[batch.id] = batch
        task = asyncio.create_task(self._run(batch, test))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch

    def get(self, tenant_id: str, batch_id: str) -> Batch | None:
        """A batch of this tenant (another tenant's id answers ``None``)."""
        batch = self._batches.get(batch_id)
        return batch if batch is not None and batch.tenant_id == tenant_id else None

    async def close(self) -> None:
        """Cancel the batches still running (their finished tests stay recorded)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for batch_id, batch in list(self._batches.items()):
            expired = batch.finished is not None and now - batch.finished > KEEP_SECONDS
            if expired or (len(self._batches) >= MAX_BATCHES and batch.finished is not None):
                del self._batches[batch_id]

    async def _run(self, batch: Batch, test: Test) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: BatchItem) -> None:
            async with gate:
                try:
                    item.result = await self._test(batch.tenant_id, item.connector_id, test)
                except NotFoundError:
                    item.problem = "no longer exists"
                except InvalidTransitionError:
                    item.problem = "deprecated: tests are refused"
                except RateLimitedError:
                    item.problem = "the tenant's test rate stayed exhausted; try again later"
                except ConnectordError as exc:
                    item.problem = exc.title
                except Exception as exc:  # noqa: BLE001 - one test's bug must not stop the batch
                    logger.error("a batch test failed: %s", type(exc).__name__)
                    item.problem = "internal error"

        try:
            await asyncio.gather(*(one(item) for item in batch.items))
        finally:
            batch.finished = time.monotonic()

    async def _test(self, tenant_id: str, connector_id: str, test: Test) -> TestResult:
        """One test in a slot of the tenant's limiter, waiting as long as it says (within a
        bound) when the tenant's rate or concurrency is spent."""
        waited = 0.0
        while True:
            try:
                async with self.limiter.slot(tenant_id):
                    return await test(connector_id)
            except RateLimitedError as exc:
                pause = min(max(exc.retry_after, 0.05), 5.0)
                if waited + pause > MAX_WAIT_SECONDS:
                    raise
                waited += pause
                await asyncio.sleep(pause)
