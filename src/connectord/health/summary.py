"""A connector's health summary, computed from its kept test history (``docs/health.md``).

Pure functions: the store gathers the facts in one read (the counts per window
are summed in SQL, over the time index), and this module turns them into the
figures of ``GET /api/v1/connectors/{id}/health``:

- **uptime** per window (1 h, 24 h, 7 d): successful checks / checks whose
  ``tested_at`` is after ``computed_at - window``; ``None`` when there were none;
- **latency p50 / p95** over 24 h: the nearest-rank percentiles of the
  latencies of the successful checks in the window (a latency that was measured);
- **status since**: for ``connected`` and ``error``, the first result of the
  newest run of successes or failures; for a status a user set, the
  connector's last change (or its creation);
- **last error**: the newest failed result, at any age the history keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from connectord.model import (
    HEALTH_WINDOWS,
    LATENCY_WINDOW,
    ConnectorStatus,
    HealthSummary,
    HealthWindow,
    LastError,
)
from connectord.store.base import HealthFacts

#: The statuses a test sets, and the outcome that sets each.
_TEST_STATUSES = {ConnectorStatus.CONNECTED.value: True, ConnectorStatus.ERROR.value: False}


def window_starts(now: datetime) -> dict[str, datetime]:
    """Each window's start: a check counts in a window when ``tested_at`` is after it."""
    return {name: now - timedelta(seconds=seconds) for name, seconds in HEALTH_WINDOWS}


def percentile(ascending: Sequence[int], p: int) -> int | None:
    """The nearest-rank ``p``-th percentile: the ``ceil(p * n / 100)``-th smallest value
    (an observed latency, never an interpolation); ``None`` for no values."""
    if not ascending:
        return None
    rank = max(1, -(-p * len(ascending) // 100))  # integer ceiling: no float rounding at the edges
    return ascending[rank - 1]


def status_since(facts: HealthFacts) -> datetime | None:
    """When the current status began, as far as the store tells (see the module docstring)."""
    outcome = _TEST_STATUSES.get(str(facts.status))
    if outcome is not None and facts.last is not None and facts.last.success is outcome:
        return facts.streak_start
    return facts.updated_at or facts.created_at


def summarize(facts: HealthFacts, now: datetime) -> HealthSummary:
    """The health summary of ``facts`` gathered at ``now``."""
    failure = facts.last_failure
    return HealthSummary(
        connector_id=facts.connector_id,
        computed_at=now,
        status=facts.status,
        status_since=status_since(facts),
        consecutive_failures=facts.consecutive_failures,
        down_since=facts.down_since,
        last_check_at=facts.last.tested_at if facts.last is not None else None,
        windows={name: HealthWindow(*facts.windows.get(name, (0, 0))) for name, _ in HEALTH_WINDOWS},
        latency_p50_ms=percentile(facts.latencies, 50),
        latency_p95_ms=percentile(facts.latencies, 95),
        latency_samples=len(facts.latencies),
        last_error=(
            LastError(failure.error_kind, failure.error, failure.tested_at) if failure is not None else None
        ),
    )


def latency_start(now: datetime) -> datetime:
    """The start of the latency percentiles' window."""
    return window_starts(now)[LATENCY_WINDOW]
