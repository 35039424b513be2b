"""The scheduler across real processes: three ``connectord serve`` replicas on one PostgreSQL
database (one killed with SIGKILL halfway), and SQLite's single owner between ``serve`` and
``connectord worker``. Every request is counted by a loopback target in the test process."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings
from tests.cli_server import CLI_ENV, free_port, serve
from tests.conftest import raw_sql_on
from tests.scheduler_target import CountingTarget, target_in_thread

SCRIPT = Path(sys.executable).parent / "connectord"
#: A check every second. A killed replica's checks are taken over 0.65 of an interval after
#: it claimed them (its session lock is gone with it), not when the lease expires.
FAST = {
    "CONNECTORD_SCHEDULER": "on",
    "CONNECTORD_CHECK_INTERVAL": "1",
    "CONNECTORD_PROBE_TIMEOUT": "2",
    "CONNECTORD_PROBE_TIMEOUT_MAX": "2",
    "CONNECTORD_SCHEDULER_LEASE": "5",
    "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
    "CONNECTORD_WEBHOOKS": "off",
}


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_") and k not in CLI_ENV}
    return {**base, **FAST, **extra}


async def _seed(settings: Settings, target: CountingTarget, n: int) -> list[str]:
    """A tenant with ``n`` http connectors on the target (path ``r/<i>``)."""
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("monitored")
        ids = []
        for first in range(0, n, 100):
            infos = await asyncio.gather(
                *(
                    facade.register_connector(tenant.id, f"c{i:04d}", "http", endpoint=target.url(f"r/{i}"))
                    for i in range(first, min(n, first + 100))
                )
            )
            ids.extend(info.id for info in infos)
        return ids


@contextmanager
def _replica(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A ``connectord serve`` process; stopped by PID (SIGTERM) at the end if still running."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"serve did not answer within 30 s:\n{log.read_text()}")


def _tests_run(url: str) -> float:
    """The replica's count of connector tests, from its Prometheus metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("connectord_connector_tests_total{")
    )


def _wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _check_cadence(
    hits: dict[str, list[float]], paths: list[str], start: float, end: float, expected: int
) -> None:
    """Every path checked ``expected`` times (within one) in [start, end), never twice within
    half an interval, never more than two intervals without a check."""
    counts, closest, longest = {}, {}, {}
    for path in paths:
        times = hits.get(path, [])
        inside = [t for t in times if start <= t < end]
        counts[path] = len(inside)
        closest[path] = min(b - a for a, b in itertools.pairwise(times))
        around = [t for t in times if t < start][-1:] + inside + [end]
        longest[path] = max(b - a for a, b in itertools.pairwise(around))
    figures = (
        f"checks per connector {min(counts.values())}-{max(counts.values())} (expected {expected}), "
        f"closest two {min(closest.values()):.3f} s, longest without {max(longest.values()):.3f} s"
    )
    assert all(abs(n - expected) <= 1 for n in counts.values()), figures
    assert all(gap >= 0.5 for gap in closest.values()), f"checked twice within half an interval: {figures}"
    assert all(gap <= 2.0 for gap in longest.values()), f"unchecked for more than two intervals: {figures}"
    print(figures)  # shown with -rP: the margins this run had


@pytest.mark.postgres
@pytest.mark.slow
def test_three_replicas_check_each_connector_once_per_interval_and_survive_a_sigkill(
    fresh_pg_url: str, secret_key_value: str, tmp_path: Path
) -> None:
    shared = {"CONNECTORD_DATABASE_URL": fresh_pg_url, "CONNECTORD_SECRET_KEY": secret_key_value}
    settings = Settings(data_dir=tmp_path / "seed", database_url=fresh_pg_url, secret_key=secret_key_value)
    with target_in_thread() as target:
        ids = asyncio.run(_seed(settings, target, 300))
        paths = [f"r/{i}" for i in range(len(ids))]
        logs = [tmp_path / f"replica-{n}.log" for n in range(3)]
        envs = [_env(**shared, CONNECTORD_DATA_DIR=str(tmp_path / f"data-{n}")) for n in range(3)]
        with _replica(envs[0], logs[0]) as (p0, u0), _replica(envs[1], logs[1]) as (p1, u1):
            with _replica(envs[2], logs[2]) as (p2, u2):
                for proc, url, log in ((p0, u0, logs[0]), (p1, u1, logs[1]), (p2, u2, logs[2])):
                    _wait_healthy(url, proc, log)
                # The first checks come within an interval of the first replica's start.
                _wait_for(lambda: len(target.snapshot()) == len(paths), 15, "every connector's first check")
                time.sleep(1.0)
                start = time.monotonic()
                time.sleep(7.5)
                before_kill = [_tests_run(u) for u in (u0, u1, u2)]
                p0.kill()  # SIGKILL: its leases stay until they expire
                p0.wait(5)
                time.sleep(start + 15 - time.monotonic())
                end = time.monotonic()
                after = [_tests_run(u) for u in (u1, u2)]
            hits = target.snapshot()
        for log in logs:
            text = log.read_text()
            assert "scheduler: on, interval 1 s, PostgreSQL: checks shared" in text, text
    _check_cadence(hits, paths, start, end, expected=15)
    assert all(n > 0 for n in before_kill), ("every replica took part", before_kill)
    assert all(a > b for a, b in zip(after, before_kill[1:], strict=True)), "the others carried on"
    total = sum(len(v) for v in hits.values())
    assert sum(after) + before_kill[0] <= total + 3, "no check counted that the target did not see"
    # The replicas stopped by SIGTERM released their leases; none of them holds one now.
    rows = asyncio.run(
        raw_sql_on(settings)("SELECT lease_owner FROM connectors WHERE lease_owner IS NOT NULL")
    )
    pids = {str(p1.pid), str(p2.pid)}
    assert not [owner for (owner,) in rows if owner.split(":")[1] in pids], rows


@pytest.mark.slow
def test_sqlite_serve_checks_on_time_and_a_worker_beside_it_refuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, egress_allow=["127.0.0.0/8"])
    with target_in_thread() as target:
        ids = asyncio.run(_seed(settings, target, 20))
        paths = [f"r/{i}" for i in range(len(ids))]
        with serve(data, FAST) as server:
            _wait_for(lambda: len(target.snapshot()) == len(paths), 10, "every connector's first check")
            start = time.monotonic()
            # Beside a serve that owns the scheduler, a worker refuses, saying why.
            env = _env(CONNECTORD_DATA_DIR=str(data))
            refused = subprocess.run([SCRIPT, "worker"], env=env, capture_output=True, text=True, timeout=60)
            time.sleep(start + 5 - time.monotonic())
            end = time.monotonic()
            log = server.log.read_text()
        hits = target.snapshot()
        assert "scheduler: on, interval 1 s, SQLite: this process owns it" in log, log
        assert refused.returncode == 4, (refused.returncode, refused.stdout, refused.stderr)
        assert "another process owns the scheduler" in refused.stderr, refused.stderr
        assert "connectord serve" in refused.stderr, refused.stderr
        _check_cadence(hits, paths, start, end, expected=5)

        # Once serve has stopped, a worker owns the store's scheduler; SIGTERM stops it
        # cleanly and releases its leases.
        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as out:
            worker = subprocess.Popen([SCRIPT, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            seen = sum(len(v) for v in target.snapshot().values())
            _wait_for(
                lambda: sum(len(v) for v in target.snapshot().values()) >= seen + 40,
                15,
                "the worker's checks",
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(15)
    text = worker_log.read_text()
    assert code == 0, text
    assert "SQLite: this process owns it" in text, text
    assert re.search(r"scheduler stopped after [1-9]\d* checks; \d+ leases released", text), text
    rows = asyncio.run(raw_sql_on(settings)("SELECT count(*) FROM connectors WHERE lease_owner IS NOT NULL"))
    assert rows == [(0,)]
    idle = {**env, "CONNECTORD_SCHEDULER": "off", "CONNECTORD_WEBHOOKS": "off"}
    off = subprocess.run([SCRIPT, "worker"], env=idle, capture_output=True, text=True, timeout=60)
    assert off.returncode == 2, (off.returncode, off.stderr)
    assert "a worker would have nothing to do" in off.stderr
