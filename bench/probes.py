"""Benchmark: recorded http connector tests per second through the facade.

Registers N http connectors on a SQLite facade in a temporary folder (the
allow list opens loopback), starts a minimal HTTP target in separate
processes, and runs ``facade.test_connectors(tenant_id, concurrency=C)``:
every test opens a fresh connection and its result is recorded as a single
test would be. In the same run, a bare aiohttp loop sends the same requests
with a fresh connection each at the same concurrency (and the http probe runs
alone, without the facade), and the script prints the rates, p50/p99 latency,
CPU per request by thread, and the facade/bare ratio. Not a test; see
bench/README.md.

    .venv/bin/python bench/probes.py [--n 10000] [--concurrency 200] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TARGET = r"""
import asyncio, os, socket, sys

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            b"Server: bench-target\r\nConnection: close\r\n\r\nok")

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.seen = transport, b""

    def data_received(self, data):
        self.seen += data
        if b"\r\n\r\n" in self.seen:
            self.transport.write(RESPONSE)
            self.transport.close()

async def serve(sock):
    server = await asyncio.get_running_loop().create_server(Answer, sock=sock, backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(4096)
try:
    import uvloop
    uvloop.run(serve(sock))
except ImportError:
    asyncio.run(serve(sock))
"""


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_target(workers: int) -> tuple[list[subprocess.Popen[str]], int]:
    """``workers`` target processes sharing one port (SO_REUSEPORT)."""
    port = free_port()
    procs = []
    for _ in range(workers):
        proc = subprocess.Popen([sys.executable, "-c", TARGET, str(port)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the target server did not start")
        procs.append(proc)
    return procs, port


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """End the target processes we started, by their PIDs."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by each thread of this process, by thread name (Linux /proc)."""
    import threading

    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    used: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_per_item(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """Microseconds of CPU per request or test, by thread; threads that used none are left out."""
    spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    return {name: round(seconds / count * 1e6) for name, seconds in spent.items() if seconds > 0}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of the values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def bounded(n: int, concurrency: int, one: Callable[[], Awaitable[float]]) -> tuple[float, list[float]]:
    """Run ``one`` n times, ``concurrency`` at once: (seconds, latencies in ms).

    ``concurrency`` workers take turns, so only that many requests exist at a
    time, as in ``test_connectors`` (n tasks up front would mostly measure the GC).
    """
    latencies: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            latencies.append(await one())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def bare_loop(url: str, n: int, concurrency: int) -> tuple[float, list[float], int, dict[str, float]]:
    """The same GET with aiohttp, a fresh connection each (force_close), no facade."""
    import aiohttp

    failures = 0
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> float:
            nonlocal failures
            start = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    failures += response.status != 200
            except aiohttp.ClientError:
                failures += 1
            return (time.perf_counter() - start) * 1000

        before = thread_cpu()
        seconds, latencies = await bounded(n, concurrency, one)
        cpu = cpu_per_item(before, thread_cpu(), n)
    return seconds, latencies, failures, cpu


async def probe_loop(url: str, n: int, concurrency: int) -> tuple[float, list[float], dict[str, float]]:
    """The http probe itself, without the facade (no store, no validation, no record)."""
    from connectord.network import EgressPolicy, Network
    from connectord.types.base import ProbeContext
    from connectord.types.http import HttpConfig, HttpType

    probe, config, policy = HttpType(), HttpConfig(), EgressPolicy(["127.0.0.0/8"])

    async def one() -> float:
        start = time.perf_counter()
        await probe.probe(ProbeContext(url, config, 10.0, Network(policy)))
        return (time.perf_counter() - start) * 1000

    before = thread_cpu()
    seconds, latencies = await bounded(n, concurrency, one)
    return seconds, latencies, cpu_per_item(before, thread_cpu(), n)


async def facade_run(
    url: str, n: int, concurrency: int, data_dir: Path, profile: str | None = None
) -> dict[str, Any]:
    """Register n connectors, then test them all through ``test_connectors``.

    With ``profile``, the event-loop thread is profiled (cProfile) during the tests
    and the stats are written there (``python -m pstats FILE``).
    """
    from connectord.admin import Admin
    from connectord.facade import ConnectorsFacade
    from connectord.settings import Settings

    settings = Settings(data_dir=data_dir, egress_allow=["127.0.0.0/8", "::1/128"])
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("bench")
        start = time.perf_counter()
        for first in range(0, n, 500):
            await asyncio.gather(
                *(
                    facade.register_connector(tenant.id, f"c{i:06d}", "http", endpoint=url)
                    for i in range(first, min(n, first + 500))
                )
            )
        registered = time.perf_counter() - start
        latencies: list[float] = []
        kinds: dict[str, int] = {}
        profiler = cProfile.Profile() if profile else None
        before = thread_cpu()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        async for result in facade.test_connectors(tenant.id, concurrency=concurrency):
            latencies.append(float(result.latency_ms or 0))
            if not result.success:
                kinds[str(result.error_kind)] = kinds.get(str(result.error_kind), 0) + 1
        seconds = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        cpu = cpu_per_item(before, thread_cpu(), n)
        connected, cursor = 0, None
        while True:  # every result was recorded: every connector is now "connected"
            page = await facade.list_connectors_page(tenant.id, status="connected", limit=1000, cursor=cursor)
            connected += len(page.items)
            if (cursor := page.next_cursor) is None:
                break
    return {
        "register_s": registered,
        "seconds": seconds,
        "latencies": latencies,
        "failures": kinds,
        "connected": connected,
        "cpu_us": cpu,
    }


def summary(label: str, count: int, seconds: float, latencies: list[float]) -> dict[str, Any]:
    """One row of the report."""
    return {
        "run": label,
        "requests": count,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """All measurements in one process: the bare loop, the probe alone, then the facade."""
    bare_n = args.bare_n or args.n
    bare_s, bare_lat, bare_fail, bare_cpu = await bare_loop(url, bare_n, args.concurrency)
    probe_s, probe_lat, probe_cpu = await probe_loop(url, bare_n, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="connectord-bench-") as data_dir:
        outcome = await facade_run(url, args.n, args.concurrency, Path(data_dir), args.profile)
    bare = summary("bare aiohttp loop", bare_n, bare_s, bare_lat)
    probe = summary("probe loop (no facade)", bare_n, probe_s, probe_lat)
    facade = summary("facade.test_connectors", args.n, outcome["seconds"], outcome["latencies"])
    return {
        "loop": args.loop,
        "concurrency": args.concurrency,
        "target_workers": args.target_workers,
        "register_per_second": round(args.n / outcome["register_s"]),
        "bare": {**bare, "failures": bare_fail, "cpu_us": bare_cpu},
        "probe": {**probe, "failures": 0, "cpu_us": probe_cpu},
        "facade": {**facade, "failures": outcome["failures"], "cpu_us": outcome["cpu_us"]},
        "recorded_connected": outcome["connected"],
        "ratio": round(facade["per_second"] / bare["per_second"], 2),
    }


def main() -> None:
    """Parse flags, start the target, measure, print."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="connectors to register and test")
    parser.add_argument("--bare-n", type=int, default=0, help="requests of the bare loop (default: --n)")
    parser.add_argument("--concurrency", type=int, default=200, help="tests (and bare requests) at once")
    parser.add_argument("--target-workers", type=int, default=1, help="target server processes")
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="event loop of the measuring process"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the facade run into FILE")
    args = parser.parse_args()
    procs, port = start_target(args.target_workers)
    url = f"http://127.0.0.1:{port}/health"
    try:
        if args.loop == "uvloop":
            import uvloop

            report = uvloop.run(run(args, url))
        else:
            report = asyncio.run(run(args, url))
    finally:
        stop(procs)
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"cpus={os.cpu_count()} loop={report['loop']} concurrency={report['concurrency']} "
        f"target_workers={report['target_workers']} register={report['register_per_second']}/s"
    )
    for row in (report["bare"], report["probe"], report["facade"]):
        print(
            f"{row['run']:<24} {row['requests']:>6} in {row['seconds']:>6.2f} s = {row['per_second']:>6}/s"
            f"  p50 {row['p50_ms']:>6.1f} ms  p99 {row['p99_ms']:>7.1f} ms  failures {row['failures']}"
        )
        print(f"{'':<24} CPU per item by thread (us): {row['cpu_us']}")
    print(f"connectors recorded as connected: {report['recorded_connected']} of {args.n}")
    print(f"ratio facade/bare = {report['ratio']:.2f}  (targets: >= 3000/s and >= 0.5)")


if __name__ == "__main__":
    main()
