"""The background work of a process: the scheduler and history retention.

``connectord serve`` runs it in its lifespan, ``connectord worker`` alone
(:func:`run_worker`, with the webhook deliveries). With ``CONNECTORD_SCHEDULER=off``
a process runs none of it. On PostgreSQL every process that runs it shares the checks through leases;
on SQLite one process of the data dir runs it (:class:`~connectord.health.owner.OwnerLock`):
a ``serve`` process that finds the lock taken waits for it (it takes the work over
if the owner stops), a ``worker`` refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from connectord.errors import ConfigurationError, ConflictError
from connectord.facade import ConnectorsFacade
from connectord.health.owner import OwnerLock
from connectord.health.retention import Retention
from connectord.health.scheduler import Scheduler
from connectord.notify.delivery import DeliveryWorker
from connectord.settings import Settings

logger = logging.getLogger("connectord.health")

#: Seconds between tries of a process waiting for SQLite's lock.
LOCK_RETRY = 2.0


class HealthService:
    """Starts and stops the scheduler and retention as the settings and the store say.

    ``role`` names the process in the lock file ("connectord serve"); with
    ``wait_for_lock=False`` a taken SQLite lock raises :class:`ConflictError`.
    """

    def __init__(self, facade: ConnectorsFacade, *, role: str, wait_for_lock: bool = True) -> None:
        self.facade = facade
        self.role = role
        self.wait_for_lock = wait_for_lock
        self.scheduler: Scheduler | None = None
        self.retention: Retention | None = None
        self._lock: OwnerLock | None = None
        self._waiter: asyncio.Task[None] | None = None

    @property
    def runs(self) -> bool:
        """Whether this process runs the scheduler now."""
        return self.scheduler is not None and self.scheduler.running

    async def start(self) -> None:
        """Start the work here, wait for SQLite's lock in the background, or refuse."""
        settings = self.facade.settings
        if settings.scheduler == "off":
            logger.info("scheduler: off (CONNECTORD_SCHEDULER=off)")
            return
        interval = f"interval {settings.check_interval:g} s"
        if settings.uses_postgres:
            self._start_work()
            assert self.scheduler is not None
            logger.info(
                "scheduler: on, %s, PostgreSQL: checks shared with the other replicas by leases (owner %s)",
                interval,
                self.scheduler.owner,
            )
            return
        self._lock = OwnerLock(settings.data_dir)
        if self._lock.acquire(self.role):
            await self._own_sqlite()
            logger.info("scheduler: on, %s, SQLite: this process owns it (pid %d)", interval, os.getpid())
            return
        holder = self._lock.holder()
        if not self.wait_for_lock:
            raise ConflictError(
                f"another process owns the scheduler of this SQLite store ({holder}); "
                "on SQLite one process runs scheduled checks: stop it first, "
                "or use PostgreSQL to share them"
            )
        logger.info(
            "scheduler: on, %s, SQLite: another process owns it (%s); this one takes over if it stops",
            interval,
            holder,
        )
        self._waiter = asyncio.create_task(self._take_over(), name="connectord-scheduler-lock")

    async def stop(self) -> None:
        """Stop the work (releasing the scheduler's leases) and give up the lock."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        if self.retention is not None:
            await self.retention.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self._lock is not None:
            self._lock.release()

    def problem(self) -> str | None:
        """Why this process is not doing the work it should (readiness), or ``None``."""
        if self.scheduler is not None and not self.scheduler.running:
            return "the scheduler has stopped"
        return None

    def _start_work(self) -> None:
        self.scheduler = Scheduler(self.facade)
        self.scheduler.start()
        self.retention = Retention(self.facade)
        self.retention.start()

    async def _own_sqlite(self) -> None:
        # Only the lock's holder schedules: a lease left in the store is a previous owner's,
        # which stopped or crashed; its checks are due again now.
        await self.facade.release_checks(None)
        self._start_work()

    async def _take_over(self) -> None:
        assert self._lock is not None
        # Polled: a blocking flock in a thread could not be cancelled when this process stops.
        while not self._lock.acquire(self.role):  # noqa: ASYNC110
            await asyncio.sleep(LOCK_RETRY)
        await self._own_sqlite()
        logger.info("scheduler: the owner stopped; SQLite: this process owns it now (pid %d)", os.getpid())


async def run_worker(settings: Settings) -> None:
    """``connectord worker``: the background work without HTTP (scheduled checks, history
    retention and webhook deliveries, as the settings say), until SIGTERM or SIGINT.

    Stopping releases the scheduler's leases at once. On SQLite, :class:`ConflictError`
    if another process owns the scheduler.
    """
    if settings.scheduler == "off" and settings.webhooks == "off":
        raise ConfigurationError(
            "CONNECTORD_SCHEDULER is off (and CONNECTORD_WEBHOOKS too): a worker would have nothing to do"
        )
    async with ConnectorsFacade(settings=settings) as facade:
        service = HealthService(facade, role="connectord worker", wait_for_lock=False)
        await service.start()
        deliveries = DeliveryWorker(facade) if settings.webhooks == "on" else None
        if deliveries is not None:
            deliveries.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
            logger.info("worker: stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await service.stop()  # first: the scheduler's leases go at once
            if deliveries is not None:
                await deliveries.stop()
