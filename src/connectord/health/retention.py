"""History retention: every test result is kept, within a count per connector and an age.

A pass deletes what is beyond the bounds (``CONNECTORD_HISTORY_MAX_PER_CONNECTOR``,
``CONNECTORD_HISTORY_MAX_AGE_DAYS``) in small steps, each its own short
transaction of at most ``batch`` rows, with a pause between steps: the writers
of new results never wait long behind it. Results past the age go first (the
time index finds them); then a walk over the connectors, a page at a time,
cuts each one's history to its newest results. On PostgreSQL one replica
prunes at a time (an advisory lock); on SQLite the one process that owns the
background work does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from connectord.facade import ConnectorsFacade
from connectord.model import utcnow

logger = logging.getLogger("connectord.health")

#: Seconds between passes.
EVERY = 600.0
#: Rows one step deletes at most (one transaction).
BATCH = 500
#: Connectors one step of the count walk looks at.
PAGE = 50


class Retention:
    """Prunes the test history in the background, every ``every`` seconds."""

    def __init__(
        self,
        facade: ConnectorsFacade,
        *,
        every: float = EVERY,
        first_after: float = 10.0,
        batch: int = BATCH,
        page: int = PAGE,
        pause: float = 0.05,
    ) -> None:
        self.facade = facade
        self.every = every
        self.first_after = first_after
        self.batch = batch
        self.page = page
        self.pause = pause
        #: Rows deleted since start.
        self.deleted = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the passes in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="connectord-retention")

    async def stop(self) -> None:
        """Stop at once: a step cut short is a transaction rolled back, nothing half done."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        """One pass; the rows deleted (0 also when another replica is pruning)."""
        settings = self.facade.settings
        if not settings.history_max_age_days and not settings.history_max_per_connector:
            return 0
        deleted = await self.facade.run_exclusive("connectord.retention", self._pass)
        self.deleted += deleted or 0
        return deleted or 0

    async def _pass(self) -> int:
        settings = self.facade.settings
        deleted = 0
        if settings.history_max_age_days:
            cutoff = utcnow() - timedelta(days=settings.history_max_age_days)
            while True:
                step = await self.facade.prune_history_before(cutoff, self.batch)
                deleted += step
                if step < self.batch:
                    break
                await asyncio.sleep(self.pause)
        keep = settings.history_max_per_connector
        if keep:
            after: str | None = None
            while True:
                step, after = await self.facade.prune_history_beyond(keep, after, self.page, self.batch)
                deleted += step
                if after is None:
                    break
                await asyncio.sleep(self.pause)
        return deleted

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            try:
                deleted = await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                logger.warning("retention: the pass failed: %s", type(exc).__name__)
            else:
                if deleted:
                    logger.info("retention: %d test results pruned", deleted, extra={"deleted": deleted})
            await asyncio.sleep(self.every)
