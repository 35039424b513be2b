"""The webhook delivery worker: sends the outbox's deliveries, signed, through the egress policy.

Runs inside ``connectord serve`` (``CONNECTORD_WEBHOOKS=on``, the default) and
``connectord worker``. It claims due deliveries in small batches with a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas take different rows),
sends each as a Standard Webhooks request, and records the outcome:

- a 2xx answer: ``delivered``;
- a refused, silent or broken connection, a 5xx, 408, 425 or 429: retried
  after ``CONNECTORD_WEBHOOK_BACKOFF`` seconds, twice as long each time, with
  jitter (between half and all of the step), at most an hour, and never sooner
  than a ``Retry-After`` the receiver asked for; after
  ``CONNECTORD_WEBHOOK_MAX_ATTEMPTS`` attempts: ``failed``;
- a destination the egress policy denies, an unusable URL, a redirect or any
  other 4xx: ``failed`` at once (retrying cannot help), and logged.

The outbox lives in the store, so a restart loses nothing: a delivery claimed by
a process that died is claimed again once its lease expires (the lease outlives
an attempt). Delivery is at least once: a receiver deduplicates on ``webhook-id``.
One connector's events reach a webhook in order: a delivery waits while an
earlier one for the same connector and webhook is pending (the store's claim).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from connectord.errors import ProbeError, SecretsError
from connectord.model import DeliveryStatus, ErrorKind, utcnow
from connectord.network.endpoints import parse_http_url
from connectord.network.http import EgressResolver, map_aiohttp_error, read_at_most
from connectord.network.tls import tls_context
from connectord.notify.signing import signature_headers

if TYPE_CHECKING:
    from connectord.facade import ConnectorsFacade
    from connectord.network.egress import EgressPolicy
    from connectord.store.base import ClaimedDelivery

logger = logging.getLogger("connectord.webhooks")

#: Deliveries claimed (and sent concurrently) at a time.
BATCH = 16
#: The longest wait between two attempts, seconds.
MAX_BACKOFF = 3600.0
#: Answers worth another attempt besides 5xx: timeout, too early, too many requests.
RETRY_STATUSES = frozenset({408, 425, 429})
#: Failures no retry can mend.
PERMANENT_KINDS = frozenset({ErrorKind.EGRESS_DENIED, ErrorKind.INVALID_CONFIG})
_RESPONSE_BYTES = 64 * 1024
_USER_AGENT = "connectord-webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST: the answer's status, or why none came (``kind``, ``error``)."""

    status: int | None
    error: str | None = None
    kind: str | None = None
    #: Seconds the receiver asked us to wait (``Retry-After``), if it did.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed."""
        if self.status is not None:
            return self.status >= 500 or self.status in RETRY_STATUSES
        return self.kind not in PERMANENT_KINDS


def backoff_delay(attempts: int, base: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``base * 2**(n-1)``
    capped at :data:`MAX_BACKOFF`, with jitter in [half, all] so receivers that failed
    together are not retried together, and at least a ``Retry-After`` (capped too)."""
    step = min(MAX_BACKOFF, base * 2.0 ** min(attempts - 1, 64))
    delay = step * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_BACKOFF))
    return delay


def _retry_after(value: str | None) -> float | None:
    # Seconds only: an HTTP-date is rare from webhook receivers, and the backoff applies anyway.
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"the receiver answered HTTP {status}; redirects are not followed"
    return f"the receiver answered HTTP {status}"


async def post_signed(
    policy: EgressPolicy, url: str, headers: dict[str, str], body: bytes, limit: float
) -> Attempt:
    """POST ``body`` to ``url`` as a probe connects: the host resolved once through the
    egress policy, the connection made only to a checked address, no proxy from the
    environment, no redirect followed, the whole bounded by ``limit`` seconds."""
    import aiohttp

    try:
        scheme, host, port, _ = parse_http_url(url)
    except ProbeError as exc:
        return Attempt(None, exc.message, exc.kind)
    target = f"{host}:{port}"
    resolver: EgressResolver | None = None
    try:
        async with asyncio.timeout(limit):
            resolver = EgressResolver(policy, await policy.resolve(host, port))
            connector = aiohttp.TCPConnector(
                ssl=tls_context(True, None) if scheme == "https" else False,
                force_close=True,
                limit=1,
                **resolver.connector_args(),
            )
            async with (
                aiohttp.ClientSession(connector=connector, trust_env=False) as session,
                session.post(
                    url,
                    data=body,
                    headers={**headers, "content-type": "application/json", "user-agent": _USER_AGENT},
                    allow_redirects=False,
                ) as response,
            ):
                await read_at_most(response, _RESPONSE_BYTES)
                status = response.status
                wait = _retry_after(response.headers.get("retry-after"))
                return Attempt(status, _status_error(status), retry_after=wait)
    except ProbeError as exc:  # the policy refused, or the name does not resolve
        return Attempt(None, exc.message, exc.kind)
    except TimeoutError:
        return Attempt(None, f"{target} did not answer within {limit:g} s", ErrorKind.TIMEOUT)
    except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        error = map_aiohttp_error(exc, target, resolver)
        return Attempt(None, error.message, error.kind)


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL: what the logs name (a path or query may be private)."""
    try:
        scheme, host, port, _ = parse_http_url(url)
    except ProbeError:
        return "(invalid URL)"
    return f"{scheme}://{host}:{port}"


class DeliveryWorker:
    """Sends due webhook deliveries until stopped. ``start()`` runs it as a task;
    :meth:`run_once` sends one batch (tests, and the loop itself)."""

    def __init__(self, facade: ConnectorsFacade, *, owner: str | None = None) -> None:
        settings = facade.settings
        self.facade = facade
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(3).hex()}"
        self.timeout = settings.webhook_timeout
        self.max_attempts = settings.webhook_max_attempts
        self.backoff = settings.webhook_backoff
        self.poll_interval = settings.webhook_poll_interval
        #: Longer than an attempt can take, so a live worker never loses a lease mid-send.
        self.lease_seconds = 2 * self.timeout + 5
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the loop in the background."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="connectord-webhooks")
            logger.info("webhook delivery: on", extra={"owner": self.owner})

    async def stop(self) -> None:
        """Let the batch in flight finish (bounded by an attempt's timeout), then release
        this worker's leases so another takes what is left at once."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        with contextlib.suppress(TimeoutError):  # past the bound, wait_for cancels the batch
            await asyncio.wait_for(task, self.timeout + 1)
        try:
            await self.facade.release_webhook_deliveries(self.owner)
        except Exception as exc:  # noqa: BLE001 - the leases expire by themselves
            logger.warning("webhook delivery: leases not released (%s)", type(exc).__name__)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while: keep going
                # What was claimed and not recorded is claimed again when its lease expires.
                logger.warning("webhook delivery: the store failed (%s)", type(exc).__name__)
                sent = 0
            if sent < BATCH:  # after a full batch, more may be due at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_interval)

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and send them concurrently; how many were claimed."""
        claimed = await self.facade.claim_webhook_deliveries(self.owner, BATCH, self.lease_seconds)
        await asyncio.gather(*(self._deliver(delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            secret = self.facade.webhook_secret(delivery)
        except SecretsError:
            attempt = Attempt(None, "the signing secret cannot be decrypted with the key ring", "secrets")
            await self._finish(delivery, attempt, retry=False)
            return
        headers = signature_headers(secret, delivery.event_id, delivery.payload, utcnow())
        attempt = await post_signed(
            self.facade.egress, delivery.url, headers, delivery.payload.encode(), self.timeout
        )
        await self._finish(delivery, attempt, retry=attempt.retryable)

    async def _finish(self, delivery: ClaimedDelivery, attempt: Attempt, *, retry: bool) -> None:
        fields = {
            "tenant_id": delivery.tenant_id,
            "webhook_id": delivery.webhook_id,
            "delivery_id": delivery.id,
            "event_type": delivery.event_type,
            "attempt": delivery.attempts,
            "http_status": attempt.status,
            "target": _origin(delivery.url),
        }
        next_at = None
        if attempt.ok:
            status = DeliveryStatus.DELIVERED
            logger.info("webhook delivered", extra=fields)
        elif retry and delivery.attempts < self.max_attempts:
            status = DeliveryStatus.PENDING
            delay = backoff_delay(delivery.attempts, self.backoff, attempt.retry_after)
            next_at = utcnow() + timedelta(seconds=delay)
            logger.warning(
                "webhook delivery failed; retrying in %.1f s: %s",
                delay,
                attempt.error,
                extra={**fields, "error_kind": attempt.kind},
            )
        else:
            status = DeliveryStatus.FAILED
            why = "refused by the egress policy" if attempt.kind == ErrorKind.EGRESS_DENIED else "failed"
            logger.warning(
                "webhook delivery %s; giving up: %s",
                why,
                attempt.error,
                extra={**fields, "error_kind": attempt.kind},
            )
        kept = await self.facade.finish_webhook_delivery(
            delivery,
            self.owner,
            status=status,
            next_attempt_at=next_at,
            last_status=attempt.status,
            last_error=attempt.error,
        )
        if not kept:
            logger.info("webhook delivery: lease lost to another worker", extra=fields)
