"""Benchmark: recorded http connector tests per second through the facade (issue 15).

Registers N http connectors (5,000 by default) on a SQLite facade in a
temporary folder (the allow list opens loopback), starts a minimal HTTP
target in separate processes, and runs ``facade.test_connectors(tenant_id,
concurrency=C)``: every test opens a fresh connection and its result is
recorded as a single test would be. Before each such bulk test, in the same
process and at the same concurrency, three contenders send N requests each,
a fresh connection per request:

- a bare asyncio-streams loop (connect, send a GET, read the status line and
  headers, close): the floor of any Python client on this loop;
- a bare aiohttp loop (one session, ``force_close``);
- the http probe alone (``HttpType().probe``: no store, no record).

It prints each run's rate, p50/p99 latency and CPU per request by thread,
each round's ratios (of the rates, and of the CPU per item, which a busy
machine disturbs less) and their median over the rounds (goals: the bulk test
>= 0.6 of the streams loop, and above the aiohttp loop). Not a test; see
bench/README.md.

    .venv/bin/python bench/probes.py [--n 5000] [--concurrency 200] [--rounds 3] [--loop asyncio|uvloop]
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


async def streams_loop(
    url: str, n: int, concurrency: int
) -> tuple[float, list[float], int, dict[str, float]]:
    """The floor of any client: asyncio streams, a fresh connection each, no HTTP library.

    Connect, send a ``GET``, read the status line and headers, close: what the
    probe does at the least, with no parsing, no egress check and no record.
    """
    from yarl import URL

    target = URL(url)
    host, port = target.raw_host or "127.0.0.1", target.port or 80
    request = f"GET {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host_port_subcomponent}\r\n\r\n".encode()
    failures = 0

    async def one() -> float:
        nonlocal failures
        start = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                failures += not head.startswith(b"HTTP/1.1 200 ")
            finally:
                writer.close()
        except (OSError, asyncio.IncompleteReadError):
            failures += 1
        return (time.perf_counter() - start) * 1000

    before = thread_cpu()
    seconds, latencies = await bounded(n, concurrency, one)
    return seconds, latencies, failures, cpu_per_item(before, thread_cpu(), n)


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


Bare = Callable[[], Awaitable[dict[str, Any]]]


async def facade_run(
    url: str,
    n: int,
    concurrency: int,
    data_dir: Path,
    *,
    rounds: int = 1,
    between: Bare | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Register n connectors, test them all once (a warm-up), then ``rounds`` times more through
    ``test_connectors``, measured.

    ``between`` runs before each round (the bare loops, so that every round has its
    own contenders, measured within seconds of it). With ``profile``, the event-loop
    thread is profiled (cProfile) during the tests and the stats are written there
    (``python -m pstats FILE``).
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
        # One pass first, not measured: the first tests pay for the type's drivers and the
        # store's compiled statements, which a bare loop never has.
        async for _ in facade.test_connectors(tenant.id, concurrency=concurrency):
            pass
        runs = []
        profiler = cProfile.Profile() if profile else None
        for _ in range(rounds):
            contenders = await between() if between is not None else {}
            latencies: list[float] = []
            kinds: dict[str, int] = {}
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
            facade_row = summary("facade.test_connectors", n, seconds, latencies)
            cpu = cpu_per_item(before, thread_cpu(), n)
            runs.append({**contenders, "facade": {**facade_row, "failures": kinds, "cpu_us": cpu}})
        if profiler is not None:
            profiler.dump_stats(profile)
        connected, cursor = 0, None
        while True:  # every result was recorded: every connector is now "connected"
            page = await facade.list_connectors_page(tenant.id, status="connected", limit=1000, cursor=cursor)
            connected += len(page.items)
            if (cursor := page.next_cursor) is None:
                break
    return {"register_s": registered, "rounds": runs, "connected": connected}


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
    """All measurements in one process, in rounds: the two bare loops and the probe alone, then
    the bulk test through the facade. On a shared machine the rates move from one minute to
    the next: each round's ratios compare runs made within seconds of each other, and the
    report gives the median of the rounds."""
    bare_n = args.bare_n or args.n

    async def contenders() -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, label, loop in (
            ("streams", "bare asyncio streams", streams_loop),
            ("aiohttp", "bare aiohttp loop", bare_loop),
        ):
            seconds, latencies, failures, cpu = await loop(url, bare_n, args.concurrency)
            found[key] = {**summary(label, bare_n, seconds, latencies), "failures": failures, "cpu_us": cpu}
        seconds, latencies, cpu = await probe_loop(url, bare_n, args.concurrency)
        probe_row = summary("probe alone (no facade)", bare_n, seconds, latencies)
        found["probe"] = {**probe_row, "failures": 0, "cpu_us": cpu}
        return found

    with tempfile.TemporaryDirectory(prefix="connectord-bench-") as data_dir:
        outcome = await facade_run(
            url,
            args.n,
            args.concurrency,
            Path(data_dir),
            rounds=args.rounds,
            between=contenders,
            profile=args.profile,
        )
    for found in outcome["rounds"]:
        rate = {key: row["per_second"] for key, row in found.items()}
        # Every contender is bound by the event-loop thread: its CPU per item is what the
        # other processes on a shared machine disturb least (the writer thread's is added).
        cpu = {key: sum(row["cpu_us"].values()) for key, row in found.items()}
        found["ratios"] = {
            "facade/streams": round(rate["facade"] / rate["streams"], 2),
            "facade/aiohttp": round(rate["facade"] / rate["aiohttp"], 2),
            "probe/streams": round(rate["probe"] / rate["streams"], 2),
            "by CPU facade/streams": round(cpu["streams"] / cpu["facade"], 2),
            "by CPU facade/aiohttp": round(cpu["aiohttp"] / cpu["facade"], 2),
            "by CPU probe/streams": round(cpu["streams"] / cpu["probe"], 2),
        }
    names = outcome["rounds"][0]["ratios"]
    median = {name: statistics.median(found["ratios"][name] for found in outcome["rounds"]) for name in names}
    return {
        "loop": args.loop,
        "concurrency": args.concurrency,
        "target_workers": args.target_workers,
        "register_per_second": round(args.n / outcome["register_s"]),
        "rounds": outcome["rounds"],
        "recorded_connected": outcome["connected"],
        "median_ratios": median,
    }


def main() -> None:
    """Parse flags, start the target, measure, print."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5_000, help="connectors to register and test")
    parser.add_argument("--bare-n", type=int, default=0, help="requests of each bare loop (default: --n)")
    parser.add_argument("--concurrency", type=int, default=200, help="tests (and bare requests) at once")
    parser.add_argument("--target-workers", type=int, default=1, help="target server processes")
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="event loop of the measuring process"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of contenders and bulk test")
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
    for number, found in enumerate(report["rounds"], 1):
        print(f"round {number}:")
        for key in ("streams", "aiohttp", "probe", "facade"):
            row = found[key]
            print(
                f"  {row['run']:<26} {row['requests']:>6} in {row['seconds']:>6.2f} s = "
                f"{row['per_second']:>6}/s  p50 {row['p50_ms']:>6.1f} ms  p99 {row['p99_ms']:>7.1f} ms  "
                f"failures {row['failures']}  CPU us/item by thread {row['cpu_us']}"
            )
        print("  ratios: " + ", ".join(f"{name} {value:.2f}" for name, value in found["ratios"].items()))
    print(f"connectors recorded as connected: {report['recorded_connected']} of {args.n}")
    print(
        "median of the rounds: "
        + ", ".join(f"{name} = {value:.2f}" for name, value in report["median_ratios"].items())
        + "  (goals: facade/streams >= 0.6, facade/aiohttp > 1)"
    )


if __name__ == "__main__":
    main()
