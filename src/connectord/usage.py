"""``last_used_at`` without a write per use: marks are coalesced in memory and written in
batches, at most once a second per connector (``docs/use.md``).

A proxy call or a gateway tool call is a use; writing its time on the connector's row
would put a database write on every request. The recorder keeps the connectors used
since its last flush in a set, and a background task writes them once a second with one
``UPDATE`` per flush (the store's :meth:`~connectord.store.base.Store.mark_used`). The
facade flushes what is pending when it closes. A process that dies loses at most the
last second of marks: ``last_used_at`` is a "when was this last used", not a ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from connectord.model import utcnow

__all__ = ["FLUSH_INTERVAL", "UsageRecorder"]

logger = logging.getLogger("connectord")

#: Seconds between flushes: a connector's ``last_used_at`` is written at most this often.
FLUSH_INTERVAL = 1.0

#: Writes one batch: the ids used and the time to record (newest mark of the batch).
Writer = Callable[[Sequence[str], datetime], Awaitable[int]]


class UsageRecorder:
    """Coalesces "this connector was used now" marks into one write per interval.

    :meth:`mark` is synchronous and costs a set insertion; the first mark starts the
    background flusher, which stops by itself once nothing is pending. ``writes``
    counts the batches written (what a test of the coalescing reads).
    """

    def __init__(self, write: Writer, interval: float = FLUSH_INTERVAL) -> None:
        self._write = write
        self.interval = interval
        self._pending: set[str] = set()
        self._newest: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        #: Batches written so far (one ``UPDATE`` each).
        self.writes = 0

    @property
    def pending(self) -> frozenset[str]:
        """The connector ids marked since the last flush."""
        return frozenset(self._pending)

    def mark(self, connector_id: str) -> None:
        """Record a use of ``connector_id`` now; written by the next flush."""
        self._pending.add(connector_id)
        self._newest = utcnow()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> int:
        """Write what is pending now, in one batch; the number of connectors written."""
        if not self._pending:
            return 0
        ids, at = sorted(self._pending), self._newest or utcnow()
        # Taken out before the write: a mark made during it belongs to the next batch.
        self._pending.clear()
        try:
            await self._write(ids, at)
        except BaseException:
            self._pending.update(ids)  # kept for the next flush
            raise
        self.writes += 1
        return len(ids)

    async def _run(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self.interval)
                try:
                    await self.flush()
                except Exception as exc:  # noqa: BLE001 - a lost mark must not kill the flusher
                    logger.warning("last_used_at could not be written: %s", type(exc).__name__)
        finally:
            self._task = None

    async def aclose(self) -> None:
        """Stop the flusher and write what is pending (the facade's ``aclose``); a later
        mark starts a new flusher."""
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
