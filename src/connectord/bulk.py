"""Bulk tests the server runs in the background (``POST /api/v1/connectors/bulk-test``).

A bulk test is a row of the ``bulk_tests`` table: its filters, its progress
(``total``, ``done``, ``ok``) and, once over, its summary (failures by error
kind, the slowest tests, the first failures). The process that started it runs
the tests, through the facade's ``test_connectors`` (each result recorded like
any test), and writes its progress at most every :data:`FLUSH_SECONDS`; so any
replica answers ``GET /api/v1/bulk-tests/{id}`` from the store.

A replica runs at most one bulk test per tenant at a time (a second start is a
:class:`~connectord.errors.ConflictError`). A bulk test whose process stopped
is ``cancelled``: when the process shuts down it records that itself; when it
dies, a row left ``running`` without a write for :data:`STALE_SECONDS` reads as
``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectord.errors import ConflictError
from connectord.model import (
    BulkItem,
    BulkSummary,
    BulkTest,
    BulkTestStatus,
    TestResult,
    new_id,
    utcnow,
)
from connectord.store.base import BulkTestRecord, Store

logger = logging.getLogger("connectord.bulk")

#: The slowest tests a summary names.
SLOWEST = 5
#: The failures a summary lists (each connector's history has every result).
MAX_FAILURES = 20
#: Progress is written at most this often...
FLUSH_SECONDS = 0.5
#: ...and at least this often while the bulk test runs, as a sign of life.
HEARTBEAT_SECONDS = 5.0
#: A ``running`` row not written for this long lost its process: it reads as cancelled.
STALE_SECONDS = 60.0

Results = Callable[[int], AsyncIterator[TestResult]]


@dataclass(slots=True)
class _Tally:
    """What the results so far add up to."""

    done: int = 0
    ok: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    #: A min-heap of ``(latency, order, result)``: the slowest, the fastest of them on top.
    slowest: list[tuple[int, int, TestResult]] = field(default_factory=list)
    failures: list[TestResult] = field(default_factory=list)
    changed: bool = True
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, result: TestResult) -> None:
        self.done += 1
        self.changed = True
        if result.success:
            self.ok += 1
        else:
            self.kinds[result.error_kind or "failed"] += 1
            if len(self.failures) < MAX_FAILURES:
                self.failures.append(result)
        entry = (result.latency_ms or 0, next(self._order), result)
        if len(self.slowest) < SLOWEST:
            heapq.heappush(self.slowest, entry)
        elif entry[0] > self.slowest[0][0]:
            heapq.heapreplace(self.slowest, entry)


def _owner() -> str:
    """This process, as the ``owner`` of the bulk tests it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


class BulkTests:
    """The bulk tests of one process: starts them, runs them in the background, reads
    any replica's from the store. :meth:`close` cancels those still running."""

    def __init__(self) -> None:
        self.owner = _owner()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: The running bulk test of each tenant (one per tenant per process).
        self._running: dict[str, str] = {}

    async def start(
        self,
        store: Store,
        tenant_id: str,
        connector_type: str | None,
        status: str | None,
        concurrency: int,
        results: Results,
        *,
        ids: Collection[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> BulkTest:
        """Record a new bulk test and start running it; ``results(concurrency)`` tests the
        matching connectors, yielding each result once recorded. ``ids`` and ``metadata``
        (a narrowed key's reach, as the store's filters) bound what is counted."""
        running = self._running.get(tenant_id)
        if running is not None:
            raise ConflictError(f"bulk test {running} is still running for this tenant")
        filters: dict[str, Any] = {
            "connector_type": connector_type,
            "status": status,
            "concurrency": concurrency,
        }
        if ids is not None or metadata is not None:
            # Kept so that only a key of the same reach reads it (its summary names connectors).
            filters["reach"] = {
                "connector_ids": sorted(ids) if ids is not None else None,
                "selector": dict(metadata) if metadata is not None else None,
            }
        self._running[tenant_id] = bulk_id = new_id()  # taken before the first await
        try:
            total = await store.count_connectors(
                tenant_id, connector_type=connector_type, status=status, ids=ids, metadata=metadata
            )
            record = BulkTestRecord(
                id=bulk_id,
                tenant_id=tenant_id,
                status=BulkTestStatus.RUNNING,
                filters=filters,
                total=total,
                done=0,
                ok=0,
                summary={"heartbeat_at": utcnow().isoformat()},
                owner=self.owner,
                created_at=utcnow(),
            )
            await store.insert_bulk_test(record)
        except BaseException:
            del self._running[tenant_id]
            raise
        task = asyncio.create_task(self._run(store, record, results(concurrency)))
        self._tasks[bulk_id] = task
        task.add_done_callback(lambda _: self._forget(tenant_id, bulk_id))
        return to_bulk_test(record, utcnow())

    def _forget(self, tenant_id: str, bulk_id: str) -> None:
        self._tasks.pop(bulk_id, None)
        if self._running.get(tenant_id) == bulk_id:
            del self._running[tenant_id]

    async def get(
        self, store: Store, tenant_id: str, bulk_id: str, reach: dict[str, Any] | None = None
    ) -> BulkTest | None:
        """A bulk test of the tenant (started by any replica), or ``None``; with ``reach`` (a
        narrowed key's, as :meth:`Reach.to_dict` gives it), only one started with that reach."""
        record = await store.get_bulk_test(tenant_id, bulk_id)
        if record is None or (reach is not None and record.filters.get("reach") != reach):
            return None
        return to_bulk_test(record, utcnow())

    async def wait(self, bulk_id: str) -> None:
        """Wait until a bulk test this process runs is over (at once if it is not running here)."""
        task = self._tasks.get(bulk_id)
        if task is not None:
            await asyncio.wait([task])

    async def close(self) -> None:
        """Cancel the running bulk tests; each records itself as cancelled."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, store: Store, record: BulkTestRecord, results: AsyncIterator[TestResult]) -> None:
        tally = _Tally()
        start = time.monotonic()
        writer = asyncio.create_task(self._write_progress(store, record, tally))
        status = BulkTestStatus.CANCELLED
        try:
            async for result in results:
                tally.add(result)
            status = BulkTestStatus.DONE
        except Exception as exc:  # noqa: BLE001 - a bulk test that breaks is recorded as cancelled
            # The class only: a driver's message could carry a secret.
            logger.error("bulk test %s stopped: %s", record.id, type(exc).__name__)
        finally:
            # Cancelled or not, stop the tests still in flight and the writer, then write the end.
            if isinstance(results, AsyncGenerator):
                await results.aclose()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._finish(store, record, tally, status, time.monotonic() - start)

    async def _write_progress(self, store: Store, record: BulkTestRecord, tally: _Tally) -> None:
        """The one writer while the tests run: progress when it changed, a heartbeat anyway."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if not tally.changed and time.monotonic() - last < HEARTBEAT_SECONDS:
                continue
            tally.changed = False
            last = time.monotonic()
            try:
                await store.update_bulk_test(
                    record.tenant_id,
                    record.id,
                    status=BulkTestStatus.RUNNING,
                    total=record.total,
                    done=tally.done,
                    ok=tally.ok,
                    summary={"heartbeat_at": utcnow().isoformat()},
                    finished_at=None,
                )
            except Exception as exc:  # noqa: BLE001 - progress is best effort; the end is written again
                logger.warning("bulk test %s: progress not written (%s)", record.id, type(exc).__name__)

    async def _finish(
        self, store: Store, record: BulkTestRecord, tally: _Tally, status: str, seconds: float
    ) -> None:
        try:
            summary = await _summary(store, record.tenant_id, tally, seconds)
            await store.update_bulk_test(
                record.tenant_id,
                record.id,
                status=status,
                # Done, the total is what was tested: connectors may come and go meanwhile.
                total=tally.done if status == BulkTestStatus.DONE else record.total,
                done=tally.done,
                ok=tally.ok,
                summary=summary.to_dict(),
                finished_at=utcnow(),
            )
        except Exception as exc:  # noqa: BLE001 - the row then reads as cancelled once stale
            logger.error("bulk test %s: its end was not written (%s)", record.id, type(exc).__name__)
            return
        logger.info(
            "bulk test %s %s: %d tested, %d failed",
            record.id,
            status,
            tally.done,
            tally.done - tally.ok,
            extra={"tenant_id": record.tenant_id},
        )


async def _summary(store: Store, tenant_id: str, tally: _Tally, seconds: float) -> BulkSummary:
    slowest = [r for _, _, r in sorted(tally.slowest, key=lambda e: (-e[0], e[1]))]
    ids = {r.connector_id for r in [*slowest, *tally.failures]}
    names: dict[str, str] = {}
    for connector_id in ids:  # a few dozen at most
        info = await store.get_connector(tenant_id, connector_id)
        if info is not None:
            names[connector_id] = info.name
    return BulkSummary(
        failed_by_kind=dict(tally.kinds.most_common()),
        slowest=[_item(r, names) for r in slowest],
        failures=[_item(r, names) for r in tally.failures],
        seconds=round(seconds, 3),
    )


def _item(result: TestResult, names: dict[str, str]) -> BulkItem:
    return BulkItem(
        connector_id=result.connector_id,
        name=names.get(result.connector_id),
        success=result.success,
        latency_ms=result.latency_ms,
        error_kind=result.error_kind,
        error=result.error,
    )


def to_bulk_test(record: BulkTestRecord, now: datetime) -> BulkTest:
    """The public form of a stored bulk test; a ``running`` one whose process stopped
    writing :data:`STALE_SECONDS` ago reads as ``cancelled``."""
    status = record.status
    if status == BulkTestStatus.RUNNING and _stale(record.summary, now):
        status = BulkTestStatus.CANCELLED
    finished = status != BulkTestStatus.RUNNING
    summary = record.summary if finished and "failed_by_kind" in record.summary else None
    return BulkTest(
        id=record.id,
        tenant_id=record.tenant_id,
        status=status,
        connector_type=record.filters.get("connector_type"),
        status_filter=record.filters.get("status"),
        concurrency=int(record.filters.get("concurrency") or 1),
        total=record.total,
        done=record.done,
        ok=record.ok,
        created_at=record.created_at,
        finished_at=record.finished_at,
        summary=BulkSummary.from_dict(summary) if summary is not None else None,
    )


def _stale(summary: dict[str, Any], now: datetime) -> bool:
    beat = summary.get("heartbeat_at")
    if not isinstance(beat, str):
        return False
    try:
        at = datetime.fromisoformat(beat)
    except ValueError:
        return False
    return now - at > timedelta(seconds=STALE_SECONDS)
