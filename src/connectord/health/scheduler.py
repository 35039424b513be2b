"""The health scheduler: every connector tested on its interval, each check once across replicas.

The database is the coordination (``docs/health.md``). A connector's
``next_check_at`` says when its check is due; a scheduler claims due checks in
batches, leasing each row to itself until ``lease_until`` (PostgreSQL: ``FOR
UPDATE SKIP LOCKED``, so replicas claiming at once take different rows), runs
them through the facade's probe path, and records each result in the same write
that sets the next due time and clears the lease. Each scheduler holds a session
lock while it runs (PostgreSQL drops it when the process dies): the leases of a
dead replica end soon after (0.65 of an interval after the claim), those of a hung
one when they expire; another replica then takes the checks over. A scheduler
that stops releases its leases at once.

Limits hold per process: at most ``scheduler_concurrency`` checks at once, and at
most ``scheduler_tenant_concurrency`` of one tenant (the claim skips a tenant at
its limit, so one tenant's backlog does not hold every slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from connectord.facade import ConnectorsFacade
from connectord.model import utcnow
from connectord.store.base import ClaimedCheck, SessionLock

logger = logging.getLogger("connectord.health")

#: Connectors given a first due time per look (and due checks claimed at most per claim).
BATCH = 500
#: What the loop waits for before its next claim (:meth:`Scheduler._wait`).
Until = Literal["refill", "slot", "poll"]
#: Seconds between looks for connectors to (un)schedule: new, resumed, paused, turned off.
UPKEEP_EVERY = 5.0


def next_check_time(due_at: datetime, interval: float, now: datetime) -> datetime:
    """When a check that was due at ``due_at`` and ran until ``now`` is due next.

    The cadence is kept (``due_at + interval``: a check that starts late does not push
    the ones after it), but never sooner than 0.6 of an interval after this check, so two
    checks are never closer than that. A check a whole interval or more behind (a backlog,
    a restart) starts a new cadence from now: catching up would turn a backlog into a burst.
    """
    step = timedelta(seconds=interval)
    if now - due_at >= step:
        return now + step
    return max(due_at + step, now + step * 0.6)


def new_owner() -> str:
    """A lease owner id: this host and process, and a random part for a restarted pid."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _TenantSlots:
    """One tenant's checks in this process: claimed (running or waiting) and its gate."""

    gate: asyncio.Semaphore
    claimed: int = 0


@dataclass
class SchedulerStats:
    """What a scheduler did since it started."""

    #: Checks run and recorded.
    checks: int = 0
    #: Claimed checks of paused or retired connectors: rescheduled, not run.
    skipped: int = 0
    #: Checks whose lease was lost before they ran (another process has them).
    lost: int = 0
    #: Checks that failed to run or record (a store error); retried after an interval.
    errors: int = 0
    #: Failures of the loop itself (the store unreachable), each followed by a pause.
    loop_errors: int = 0
    #: Claims made (round trips to the store), whatever they returned.
    claims: int = 0
    started_at: datetime = field(default_factory=utcnow)


class Scheduler:
    """Claims due checks and runs them, until :meth:`stop`.

    ``poll`` is how often it looks for due checks when none is waiting (default: a
    twentieth of the default interval, between 0.05 and 1 s); checks start within about
    that much of their due time.
    """

    def __init__(
        self,
        facade: ConnectorsFacade,
        *,
        owner: str | None = None,
        poll: float | None = None,
        batch: int = BATCH,
        upkeep_every: float = UPKEEP_EVERY,
        grace: float | None = None,
    ) -> None:
        settings = facade.settings
        self.facade = facade
        self.owner = owner or new_owner()
        self.concurrency = settings.scheduler_concurrency
        self.tenant_concurrency = settings.scheduler_tenant_concurrency
        self.poll = poll if poll is not None else min(1.0, max(0.05, settings.check_interval / 20))
        self.batch = batch
        self.upkeep_every = upkeep_every
        #: Seconds :meth:`stop` lets the probes under way finish (default: the longest probe, at most 5 s).
        self.grace = grace if grace is not None else min(5.0, settings.probe_timeout_max)
        self.stats = SchedulerStats()
        self._lease = timedelta(seconds=settings.lease_seconds)
        # A check that waited for its tenant's slot renews its lease if less than this is
        # left: the longest probe, and a quarter of the lease's margin over it (at most 5 s)
        # for the recording.
        margin = settings.lease_seconds - settings.probe_timeout_max
        self._renew_below = timedelta(seconds=settings.probe_timeout_max + min(5.0, margin / 4))
        # Claimed checks, by connector id: running, or waiting for a slot (their tenant's,
        # then one of the process's).
        self._claimed: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(self.concurrency)
        self._probing: set[str] = set()
        self._tenants: dict[str, _TenantSlots] = {}
        self._slot_freed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Held while this scheduler lives: on PostgreSQL, the others see its leases end
        # the moment its process dies (its connection closes), not when they expire.
        self._alive: SessionLock | None = None

    @property
    def running(self) -> bool:
        """Whether the loop runs (it does until :meth:`stop`, surviving store failures)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="connectord-scheduler")

    async def stop(self) -> None:
        """Stop claiming; let the probes under way finish (for up to ``grace`` seconds) and
        record, cancel the rest, and release every lease left at once, so another replica
        runs those checks without waiting for the leases to expire. (A probe that already
        reached its target is not cut without need: another replica would repeat it.)"""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connector_id, check in self._claimed.items():
            if connector_id not in self._probing:
                check.cancel()  # still waiting for a slot: nothing was sent
        checks = list(self._claimed.values())
        if checks:
            await asyncio.wait(checks, timeout=self.grace)
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        try:
            released = await self.facade.release_checks(self.owner)
        except Exception as exc:  # noqa: BLE001 - stopping anyway: the leases expire by themselves
            logger.warning("scheduler: could not release its leases (%s); they expire", type(exc).__name__)
            released = 0
        alive, self._alive = self._alive, None
        if alive is not None:
            await alive.release()
        logger.info(
            "scheduler stopped after %d checks; %d leases released",
            self.stats.checks,
            released,
            extra={"owner": self.owner, "checks": self.stats.checks, "released": released},
        )

    # --- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_upkeep = 0.0
        while True:
            try:
                if self._alive is None or not self._alive.held:
                    # Before any claim (and again if its connection broke): claims by an owner
                    # without its lock would look like a dead replica's to the others.
                    self._alive = await self.facade.hold_owner_lock(self.owner)
                if loop.time() >= next_upkeep:
                    scheduled = await self.facade.schedule_checks(self.batch)
                    # A full batch: more connectors wait for a first due time; look again soon.
                    next_upkeep = loop.time() + (0.0 if scheduled >= self.batch else self.upkeep_every)
                until = await self.claim()
            except Exception as exc:  # noqa: BLE001 - the store may be down for a while: keep trying
                self.stats.loop_errors += 1
                logger.warning("scheduler: %s; trying again in %g s", type(exc).__name__, self.poll * 10)
                await asyncio.sleep(self.poll * 10)
                continue
            await self._wait(until)

    async def _wait(self, until: Until) -> None:
        """Until the next look: a poll period at most; sooner once a tenth of the slots are
        free (``"refill"``: a claim per freed slot would cost a round trip per check), or
        once any slot frees (``"slot"``: a tenant left out of the claim may go on)."""
        if until == "poll":
            await asyncio.sleep(self.poll)
            return
        wanted = max(1, min(self.batch, self.concurrency // 10)) if until == "refill" else self._room() + 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll):
                while self._room() < wanted:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()

    def _room(self) -> int:
        # Up to twice the slots are claimed: the checks waiting here take a slot the moment
        # one frees, while the next claim is on its way (a claim waits for a commit).
        return 2 * self.concurrency - len(self._claimed)

    async def claim(self) -> Until:
        """Claim due checks for the room there is and start them; what to wait for before
        the next claim (more are due while the claim was full or there was no room)."""
        free = min(self._room(), self.batch)
        if free <= 0:
            return "refill"
        # Likewise a tenant may keep twice its limit claimed; beyond that it is left out of
        # the claims, and the other tenants' checks get the slots.
        full = [t for t, slots in self._tenants.items() if slots.claimed >= 2 * self.tenant_concurrency]
        claims = await self.facade.claim_due_checks(self.owner, free, skip_tenants=full)
        self.stats.claims += 1
        for claim in claims:
            self._start(claim)
        if len(claims) == free:
            return "refill"
        return "slot" if full else "poll"

    def _start(self, claim: ClaimedCheck) -> None:
        tenant = claim.connector.tenant_id
        slots = self._tenants.get(tenant)
        if slots is None:
            slots = self._tenants[tenant] = _TenantSlots(asyncio.Semaphore(self.tenant_concurrency))
        slots.claimed += 1
        self._claimed[claim.connector.id] = asyncio.create_task(self._check(claim, slots))

    async def _check(self, claim: ClaimedCheck, slots: _TenantSlots) -> None:
        info = claim.connector
        try:
            async with slots.gate, self._slots:
                await self._run(claim)
        except Exception as exc:  # noqa: BLE001 - one check's failure must not stop the others
            self.stats.errors += 1
            logger.warning(
                "scheduled check failed: %s",
                type(exc).__name__,
                extra={"tenant_id": info.tenant_id, "connector_id": info.id},
            )
            # Not again at once (the store may be failing); the lease is dropped here,
            # or expires if this fails too.
            later = utcnow() + timedelta(seconds=claim.interval)
            with contextlib.suppress(Exception):
                await self.facade.finish_check(claim, self.owner, later)
        finally:
            slots.claimed -= 1
            if slots.claimed == 0:
                del self._tenants[info.tenant_id]
            self._claimed.pop(info.id, None)
            self._slot_freed.set()

    async def _run(self, claim: ClaimedCheck) -> None:
        now = utcnow()
        claimed_at = claim.lease_until - self._lease
        # It waited for a slot: the probe must end within the lease, and start soon after
        # the claim (a dead owner's claims are taken over 0.65 of an interval after they
        # were made or renewed; the store counts on a probe within an eighth of it).
        if claim.lease_until - now < self._renew_below or now - claimed_at > timedelta(
            seconds=claim.interval / 8
        ):
            renewed = await self.facade.renew_check(claim, self.owner)
            if renewed is None:
                self.stats.lost += 1
                return
            claim = renewed
        self._probing.add(claim.connector.id)
        try:
            result = await self.facade.scheduled_check(
                claim, self.owner, lambda done: next_check_time(claim.due_at, claim.interval, done)
            )
        finally:
            self._probing.discard(claim.connector.id)
        if result is None:
            self.stats.skipped += 1
        else:
            self.stats.checks += 1
