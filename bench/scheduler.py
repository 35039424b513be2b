"""Benchmark: sustained scheduled checks per second, with every result recorded.

Registers N http connectors on a minimal loopback target (bench/probes.py's,
in a process of its own) and runs the real scheduler: ``connectord worker``
processes with ``CONNECTORD_CHECK_INTERVAL=1``, so that with N = 10,000 every
check is always due and the scheduler runs flat out. It measures, after a
warm-up, the results recorded per second (rows added to the history) and the
worker's CPU time per check (``/proc/<pid>/stat``), against a bare aiohttp loop
with a fresh connection per request at the same concurrency, run before and
after in the same run (goal: >= 0.6 of the bare loop's mean). Then the same with two workers on one
PostgreSQL database: the sum and the share each replica took. Not a test; see
bench/README.md.

    .venv/bin/python bench/scheduler.py [--n 10000] [--concurrency 200] [--seconds 20] [--no-postgres]
    .venv/bin/python bench/scheduler.py --seconds 15 --profile /tmp/spy   # py-spy of each worker

Besides the ratio of the rates it prints the ratio of the CPU per item (the bare
loop's per request to the worker's per check), which a shared machine disturbs less.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from probes import bare_loop, start_target, stop

SCRIPT = Path(sys.executable).parent / "connectord"
PG_ADMIN = os.environ.get("CONNECTORD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seed(settings: Any, url: str, n: int) -> None:
    """A tenant with n http connectors on the target."""
    from connectord.admin import Admin
    from connectord.facade import ConnectorsFacade

    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("bench")
        for first in range(0, n, 500):
            await asyncio.gather(
                *(
                    facade.register_connector(tenant.id, f"c{i:06d}", "http", endpoint=url)
                    for i in range(first, min(n, first + 500))
                )
            )


async def recorded(settings: Any) -> int:
    """Test results in the history so far (every tenant)."""
    from connectord.store.sql import open_store

    store = open_store(settings)
    await store.start()
    try:
        import sqlalchemy as sa

        from connectord.store.backends import compile_query
        from connectord.store.schema import test_results

        q = compile_query(
            sa.select(sa.func.count().label("n")).select_from(test_results), store.backend.dialect
        )
        row = await store.backend.read(lambda ex: ex.one(q, {}))
        return int(row["n"]) if row is not None else 0
    finally:
        await store.close()


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """``count`` ``connectord worker`` processes with their log files."""
    workers = []
    for i in range(count):
        log = logs / f"worker-{i}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([SCRIPT, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
        workers.append((proc, log))
    return workers


def stop_workers(workers: list[tuple[subprocess.Popen[bytes], Path]]) -> list[int]:
    """SIGTERM each worker we started (by PID); the checks each one reported at its stop."""
    for proc, _ in workers:
        proc.send_signal(signal.SIGTERM)
    counts = []
    for proc, log in workers:
        proc.wait(60)
        found = re.search(r"scheduler stopped after (\d+) checks", log.read_text())
        counts.append(int(found.group(1)) if found else -1)
    return counts


def measure(
    settings: Any, env: dict[str, str], replicas: int, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    """Run ``replicas`` workers; recorded checks/s and CPU per check over the window after the warm-up."""
    workers = start_workers(replicas, env, logs)
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(recorded(settings)) == 0:
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in workers):
                raise SystemExit(f"the workers did not start checking:\n{workers[0][1].read_text()}")
            time.sleep(0.5)
        time.sleep(args.warmup)
        count0, cpu0, start = (
            asyncio.run(recorded(settings)),
            [process_cpu(p.pid) for p, _ in workers],
            time.monotonic(),
        )
        profilers = [profile(p.pid, args, logs / f"{replicas}-{i}") for i, (p, _) in enumerate(workers)]
        time.sleep(args.seconds)
        for profiler in profilers:
            if profiler is not None:
                profiler.wait(30)
        count1, cpu1, end = (
            asyncio.run(recorded(settings)),
            [process_cpu(p.pid) for p, _ in workers],
            time.monotonic(),
        )
    finally:
        shares = stop_workers(workers)
    checks = count1 - count0
    return {
        "replicas": replicas,
        "checks": checks,
        "seconds": round(end - start, 2),
        "per_second": round(checks / (end - start)),
        "cpu_us_per_check": round(sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / max(checks, 1) * 1e6),
        "cpu_cores": [round((b - a) / (end - start), 2) for a, b in zip(cpu0, cpu1, strict=True)],
        "checks_per_replica_total": shares,
    }


def profile(pid: int, args: argparse.Namespace, name: Path) -> subprocess.Popen[bytes] | None:
    """With ``--profile DIR``: py-spy samples the worker over the window into DIR (collapsed
    stacks, one line per stack: ``flamegraph.pl`` draws them, ``sort -k2 -n`` ranks them)."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"worker-{name.name}.txt"
    command = [
        str(SCRIPT.parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(args.seconds)),
    ]
    command += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_env(args: argparse.Namespace, **extra: str) -> dict[str, str]:
    """The workers' settings: checks always due, the concurrency of the bare loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    return {
        **env,
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_CHECK_INTERVAL": "1",
        "CONNECTORD_SCHEDULER_CONCURRENCY": str(args.concurrency),
        "CONNECTORD_SCHEDULER_TENANT_CONCURRENCY": str(args.concurrency),
        "CONNECTORD_WEBHOOKS": "off",
        **extra,
    }


async def pg_database(sql: str) -> None:
    """Run one statement on the PostgreSQL server's admin database."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def bare(url: str, args: argparse.Namespace) -> tuple[float, float]:
    """The bare aiohttp loop over N requests: its rate and CPU (us) per request, printed too."""
    seconds, _, failures, cpu = asyncio.run(bare_loop(url, args.n, args.concurrency))
    print(
        f"bare aiohttp loop: {args.n} requests in {seconds:.2f} s = {args.n / seconds:.0f}/s, "
        f"failures {failures}, CPU per request by thread (us): {cpu}"
    )
    return args.n / seconds, sum(cpu.values())


def main() -> None:
    """Parse flags, start the target, measure, print."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="connectors")
    parser.add_argument("--concurrency", type=int, default=200, help="checks (and bare requests) at once")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of checks before the window")
    parser.add_argument("--no-postgres", action="store_true", help="skip the two replicas on PostgreSQL")
    parser.add_argument("--profile", metavar="DIR", help="py-spy each worker over the window into DIR")
    args = parser.parse_args()

    from connectord.settings import Settings

    procs, port = start_target(1)
    url = f"http://127.0.0.1:{port}/health"
    try:
        before = bare(url, args)
        with tempfile.TemporaryDirectory(prefix="connectord-bench-") as tmp:
            data = Path(tmp) / "data"
            settings = Settings(data_dir=data, egress_allow=["127.0.0.0/8"])
            asyncio.run(seed(settings, url, args.n))
            one = measure(settings, worker_env(args, CONNECTORD_DATA_DIR=str(data)), 1, args, Path(tmp))
            print(
                f"scheduler, 1 replica (SQLite): {one['checks']} checks recorded in {one['seconds']} s = "
                f"{one['per_second']}/s, CPU per check {one['cpu_us_per_check']} us "
                f"({one['cpu_cores']} cores)"
            )
            # The bare loop again: on a shared machine its rate moves; the ratio is to the mean.
            after = bare(url, args)
            bare_rate, bare_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            print(
                f"ratio scheduler/bare = {one['per_second'] / bare_rate:.2f}  (goal >= 0.6); "
                f"by CPU per item (bare us per request / us per check) "
                f"{bare_cpu / max(one['cpu_us_per_check'], 1):.2f}"
            )
            if args.no_postgres:
                return
            name = f"connectord_bench_{secrets.token_hex(4)}"
            asyncio.run(pg_database(f"CREATE DATABASE {name}"))
            try:
                pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
                key = base64.b64encode(secrets.token_bytes(32)).decode()
                pg = Settings(
                    data_dir=data, database_url=pg_url, secret_key=key, egress_allow=["127.0.0.0/8"]
                )
                asyncio.run(seed(pg, url, args.n))
                env = worker_env(
                    args,
                    CONNECTORD_DATABASE_URL=pg_url,
                    CONNECTORD_SECRET_KEY=key,
                    CONNECTORD_DATA_DIR=str(Path(tmp) / "pg"),
                )
                two = measure(pg, env, 2, args, Path(tmp))
            finally:
                asyncio.run(pg_database(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            total = sum(two["checks_per_replica_total"])
            shares = [f"{c / total:.0%}" for c in two["checks_per_replica_total"]] if total > 0 else []
            print(
                f"scheduler, 2 replicas (PostgreSQL): {two['checks']} checks recorded "
                f"in {two['seconds']} s = "
                f"{two['per_second']}/s in all, CPU per check {two['cpu_us_per_check']} us "
                f"({two['cpu_cores']} cores); each replica's share of its checks: {shares} "
                f"({two['checks_per_replica_total']} since start)"
            )
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
