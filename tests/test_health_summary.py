"""The health summary (``facade.health``) on SQLite and PostgreSQL, against the history.

Results are written straight through the real store with chosen ``tested_at`` times
(``record_test``, the call every test goes through), so windows, percentiles and
streaks are placed exactly. Each test checks the figures twice: against the values
worked out by hand, and against an independent computation from the connector's
history (``facade.history``) written here without the package's code.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from connectord.errors import NotFoundError
from connectord.facade import ConnectorsFacade
from connectord.health.summary import percentile
from connectord.lifecycle import changes_after_test
from connectord.model import AuditEvent, HealthSummary, TestResult, new_id, utcnow

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


async def _record(
    facade: ConnectorsFacade,
    tenant: str,
    connector_id: str,
    ago: timedelta,
    success: bool,
    latency_ms: int | None,
    *,
    kind: str = "refused",
    threshold: int = 3,
) -> None:
    """One test result, ``ago`` before now, recorded as a real test is (status included)."""
    result = TestResult(
        success=success,
        connector_id=connector_id,
        latency_ms=latency_ms,
        error=None if success else f"{kind} at {ago}",
        details={} if success else {"error_kind": kind},
        tested_at=utcnow() - ago,
    )
    audit = AuditEvent(new_id(), tenant, "tests", "connector.test", connector_id, utcnow(), {})
    stored = await facade.store.record_test(
        tenant,
        result,
        audit,
        lambda current: changes_after_test(current, result, None),
        failure_threshold=threshold,
    )
    assert stored


async def _history(facade: ConnectorsFacade, tenant: str, connector_id: str) -> list[TestResult]:
    results: list[TestResult] = []
    cursor: str | None = None
    while True:
        page = await facade.history(connector_id, tenant, limit=7, cursor=cursor)  # several pages
        results.extend(page.items)
        if page.next_cursor is None:
            return results
        cursor = page.next_cursor


def _nearest_rank(values: list[int], p: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(Fraction(p, 100) * len(ordered)) - 1]


def independent(
    history: list[TestResult], now: datetime, status: str, changed_at: datetime
) -> dict[str, Any]:
    """The summary's figures from the history alone (newest first), as docs/health.md defines them."""
    figures: dict[str, Any] = {"uptime": {}, "checks": {}}
    for name, length in WINDOWS.items():
        inside = [r for r in history if r.tested_at is not None and r.tested_at > now - length]
        ok = sum(r.success for r in inside)
        figures["checks"][name] = {"total": len(inside), "ok": ok}
        figures["uptime"][name] = ok / len(inside) if inside else None
    day = [
        r.latency_ms
        for r in history
        if r.success and r.latency_ms is not None and r.tested_at and r.tested_at > now - WINDOWS["24h"]
    ]
    figures["p50"], figures["p95"] = _nearest_rank(day, 50), _nearest_rank(day, 95)
    figures["samples"] = len(day)
    failures = [r for r in history if not r.success]
    figures["last_error"] = (failures[0].error_kind, failures[0].error) if failures else None
    figures["last_check_at"] = history[0].tested_at if history else None
    run = 0
    while run < len(history) and not history[run].success:
        run += 1
    figures["consecutive_failures"] = run
    if status in ("connected", "error") and history and history[0].success is (status == "connected"):
        streak = 0
        while streak < len(history) and history[streak].success is history[0].success:
            streak += 1
        figures["status_since"] = history[streak - 1].tested_at
    else:
        figures["status_since"] = changed_at
    return figures


def as_figures(summary: HealthSummary) -> dict[str, Any]:
    data = summary.to_dict()
    error = summary.last_error
    return {
        "uptime": data["uptime"],
        "checks": data["checks"],
        "p50": summary.latency_p50_ms,
        "p95": summary.latency_p95_ms,
        "samples": summary.latency_samples,
        "last_error": (error.error_kind, error.error) if error else None,
        "last_check_at": summary.last_check_at,
        "consecutive_failures": summary.consecutive_failures,
        "status_since": summary.status_since,
    }


async def _compare(facade: ConnectorsFacade, tenant: str, connector_id: str) -> HealthSummary:
    summary = await facade.health(connector_id, tenant)
    info = await facade.get_connector(connector_id, tenant)
    assert info is not None
    assert summary.status == info.status
    history = await _history(facade, tenant, connector_id)
    expected = independent(history, summary.computed_at, info.status, info.updated_at or info.created_at)
    assert as_figures(summary) == expected
    return summary


M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


async def test_windows_percentiles_streak_and_last_error(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "api", "custom", endpoint="h.invalid:1")
    timeline = [
        (8 * D, False, 5),  # outside every window
        (6 * D, True, 100),
        (3 * D, False, 7),
        (30 * H, True, 50),  # in 7d only
        (23 * H, True, 70),
        (12 * H, False, 9),  # the last error
        (2 * H, True, 10),  # the streak of successes starts here
        (59 * M, True, 20),
        (30 * M, True, 30),
        (1 * M, True, 40),
    ]
    for ago, success, latency in timeline:
        await _record(facade, tenant, info.id, ago, success, latency)
    summary = await _compare(facade, tenant, info.id)

    assert summary.status == "connected"
    assert {n: (w.checks, w.ok) for n, w in summary.windows.items()} == {
        "1h": (3, 3),
        "24h": (6, 5),
        "7d": (9, 7),
    }
    assert summary.windows["24h"].uptime == pytest.approx(5 / 6)
    # Successes in 24 h: 70 10 20 30 40 -> sorted 10 20 30 40 70; ranks ceil(2.5)=3, ceil(4.75)=5.
    assert (summary.latency_p50_ms, summary.latency_p95_ms, summary.latency_samples) == (30, 70, 5)
    assert summary.last_error is not None
    assert summary.last_error.error_kind == "refused"
    assert summary.last_error.error == f"refused at {12 * H}"
    history = await _history(facade, tenant, info.id)
    assert summary.status_since == history[3].tested_at  # the result 2 h ago
    assert summary.last_check_at == history[0].tested_at
    assert summary.consecutive_failures == 0
    assert summary.down_since is None


async def test_a_run_of_failures_is_the_error_status_and_the_outage(
    facade: ConnectorsFacade, tenant: str
) -> None:
    info = await facade.register_connector(
        tenant, "db", "custom", endpoint="h.invalid:1", failure_threshold=2
    )
    await _record(facade, tenant, info.id, 3 * H, True, 12, threshold=2)
    for minutes, kind in ((50, "timeout"), (40, "refused"), (30, "auth")):
        await _record(facade, tenant, info.id, minutes * M, False, 5, kind=kind, threshold=9)
    summary = await _compare(facade, tenant, info.id)

    history = await _history(facade, tenant, info.id)
    assert summary.status == "error"
    assert summary.consecutive_failures == 3
    assert summary.status_since == history[2].tested_at  # the first failure of the run
    # The connector's own threshold (2) wins over the one the caller passed (9).
    assert summary.down_since == history[1].tested_at
    assert summary.last_error is not None
    assert summary.last_error.error_kind == "auth"
    assert (summary.windows["1h"].checks, summary.windows["1h"].ok) == (3, 0)
    assert summary.windows["1h"].uptime == 0.0
    assert (summary.latency_p50_ms, summary.latency_p95_ms) == (12, 12)

    await _record(facade, tenant, info.id, 0 * M, True, 8)
    recovered = await _compare(facade, tenant, info.id)
    assert (recovered.status, recovered.consecutive_failures, recovered.down_since) == ("connected", 0, None)
    assert recovered.last_error is not None  # still the newest failure
    assert recovered.last_error.error_kind == "auth"


async def test_no_history_and_a_status_a_user_set(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "new", "custom", endpoint="h.invalid:1")
    empty = await _compare(facade, tenant, info.id)
    assert empty.status == "registered"
    assert empty.status_since == info.created_at
    assert all(w.checks == 0 and w.uptime is None for w in empty.windows.values())
    assert (empty.latency_p50_ms, empty.latency_p95_ms, empty.latency_samples) == (None, None, 0)
    assert (empty.last_error, empty.last_check_at, empty.consecutive_failures) == (None, None, 0)
    assert empty.to_dict()["uptime"] == {"1h": None, "24h": None, "7d": None}

    await _record(facade, tenant, info.id, 10 * M, True, 3)
    paused = await facade.update_connector(info.id, tenant, status="disconnected")
    assert paused is not None
    await _record(facade, tenant, info.id, 0 * M, False, 4)  # a test does not end a pause
    summary = await _compare(facade, tenant, info.id)
    assert summary.status == "disconnected"
    assert summary.status_since == paused.updated_at
    assert summary.consecutive_failures == 1


async def test_other_tenants_and_unknown_ids_have_no_health(
    facade: ConnectorsFacade, tenant: str, other_tenant: str
) -> None:
    info = await facade.register_connector(tenant, "mine", "custom", endpoint="h.invalid:1")
    for connector_id, who in ((info.id, other_tenant), (new_id(), tenant), ("not-an-id\x00", tenant)):
        with pytest.raises(NotFoundError):
            await facade.health(connector_id, who)


async def test_the_summary_round_trips_through_its_dict(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "rt", "custom", endpoint="h.invalid:1")
    await _record(facade, tenant, info.id, 5 * M, False, 2, kind="dns")
    await _record(facade, tenant, info.id, 1 * M, True, 9)
    summary = await facade.health(info.id, tenant)
    assert HealthSummary.from_dict(summary.to_dict()) == summary


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([7], 95, 7),
        ([1, 2], 50, 1),
        ([1, 2], 95, 2),
        (list(range(1, 21)), 95, 19),
        (list(range(1, 61)), 95, 57),  # 0.95 * 60 is 56.99999999999999 in floating point
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 95, 95),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[int], p: int, expected: int | None) -> None:
    assert percentile(values, p) == expected
    assert percentile(values, p) == _nearest_rank(values, p)
