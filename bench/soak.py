"""Soak benchmark (not a test): mixed load against one `connectord serve` on SQLite.

For ``--minutes`` (default 10) clients read, write (create, update, delete, so the
data set stays the same size and each minute is comparable with the first), test and
bulk-test connectors and
call the target through the HTTP proxy (an eighth of their requests) while the
scheduler checks every connector; each minute prints the requests, the errors (any
status the request should not get), p50/p99 latency and the server's RSS. Goals
(issue 14): 0 errors, each minute's p99 within 1.5x of the first's, and RSS not
growing after the first minute by more than 10 %.

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 8] [--connectors 500]

Everything runs on loopback: a target server answers the http connectors' tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent


@dataclass
class Minute:
    """What happened in one minute of load."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _target(port: int) -> asyncio.Server:
    """A minimal HTTP server the http connectors test against."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [VENV_BIN / "connectord", *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _client(
    n: int, url: str, key: str, target: str, ids: list[str], minutes: list[Minute], stop: asyncio.Event
) -> None:
    """One client's loop: mostly reads, then proxy calls, writes, tests and now and then a
    bulk test."""
    headers = {"Authorization": f"Bearer {key}"}
    mine: list[str] = []  # the connectors this client created and has not deleted yet
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        i = 0
        while not stop.is_set():
            i += 1
            roll = random.random()
            start = time.perf_counter()
            try:
                if roll < 0.50:
                    answer = await client.get(f"/api/v1/connectors/{random.choice(ids)}")
                    expected = {200}
                elif roll < 0.62:
                    answer = await client.get("/api/v1/connectors", params={"limit": 100})
                    expected = {200}
                elif roll < 0.75:
                    # Through the credential-injecting proxy to the target (docs/use.md).
                    answer = await client.get(f"/api/v1/connectors/{random.choice(ids)}/proxy/")
                    expected = {200}
                elif roll < 0.87:
                    # Writes keep the data set steady, so a minute is comparable with the
                    # first: create, change one of the seeds, delete what was created.
                    step = i % 3
                    if step == 0 or (step == 2 and not mine):
                        body = {"name": f"soak-{n}-{i}", "connector_type": "http", "endpoint": target}
                        answer = await client.post("/api/v1/connectors", json=body)
                        expected = {201}
                        if answer.status_code == 201:
                            mine.append(answer.json()["id"])
                    elif step == 1:
                        change = {"metadata": {"round": str(i)}}
                        answer = await client.put(f"/api/v1/connectors/{random.choice(ids)}", json=change)
                        expected = {200}
                    else:
                        answer = await client.delete(f"/api/v1/connectors/{mine.pop(0)}")
                        expected = {204}
                elif roll < 0.995:
                    answer = await client.post(f"/api/v1/connectors/{random.choice(ids)}/test")
                    expected = {200, 429}  # the per-tenant test limits answer 429 by design
                else:
                    answer = await client.post(
                        "/api/v1/connectors/bulk-test", json={"connector_type": "http"}
                    )
                    expected = {202, 409, 429}  # 409: a bulk test of the tenant is running
            except httpx.HTTPError as exc:
                minutes[-1].error(type(exc).__name__)
                continue
            minutes[-1].latencies.append((time.perf_counter() - start) * 1000)
            if answer.status_code not in expected:
                minutes[-1].error(f"{answer.request.method} {answer.status_code}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--connectors", type=int, default=500)
    parser.add_argument("--check-interval", type=float, default=30)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="connectord-soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    env |= {
        "CONNECTORD_DATA_DIR": str(data),
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_LOG_LEVEL": "WARNING",
        "CONNECTORD_CHECK_INTERVAL": str(args.check_interval),
        "CONNECTORD_TEST_RATE_PER_MINUTE": "100000",
        # The per-key proxy rate would refuse part of this load (429) by design: measure the
        # proxy, not its limiter.
        "CONNECTORD_PROXY_RATE": "1000000",
    }
    _cli(env, "tenants", "create", "soak")
    scopes = [
        a
        for s in ("connectors:read", "connectors:write", "connectors:test", "connectors:use")
        for a in ("--scope", s)
    ]
    key = _cli(env, "keys", "create", "--tenant", "soak", *scopes, "--key-only")
    target_port = _free_port()
    target = f"http://127.0.0.1:{target_port}/"
    server = await _target(target_port)
    port = _free_port()
    log = (data / "serve.log").open("w")
    serve = [VENV_BIN / "connectord", "serve", "--port", str(port)]
    proc = subprocess.Popen(serve, env=env, stdout=log, stderr=log)  # noqa: ASYNC220 - once, before the load
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            ids: list[str] = []
            for i in range(args.connectors):
                body = {"name": f"seed-{i}", "connector_type": "http", "endpoint": target}
                ids.append((await client.post("/api/v1/connectors", json=body)).json()["id"])
        minutes = [Minute()]
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(_client(n, url, key, target, ids, minutes, stop)) for n in range(args.clients)
        ]
        print(
            f"{args.clients} clients, {args.connectors} connectors, scheduler every {args.check_interval:g} s"
        )
        print("minute  requests  errors  p50_ms  p99_ms  rss_mb")
        rows: list[tuple[float, float]] = []
        total_errors = 0
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            await asyncio.sleep(min(60, end - time.monotonic()))
            done, minutes[-1:] = minutes[-1], [Minute()]
            lat = sorted(done.latencies) or [0.0]
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            rss = _rss_mb(proc.pid)
            rows.append((p99, rss))
            errors = sum(done.errors.values())
            total_errors += errors
            detail = f"  {done.errors}" if done.errors else ""
            print(
                f"{len(rows):>6}  {len(done.latencies):>8}  {errors:>6}  {statistics.median(lat):>6.1f}"
                f"  {p99:>6.1f}  {rss:>6.1f}{detail}",
                flush=True,
            )
        stop.set()
        await asyncio.gather(*clients)
        first_p99, first_rss = rows[0]
        print(f"errors: {total_errors} (goal 0)")
        print(f"p99 worst/first: {max(r[0] for r in rows) / max(first_p99, 0.001):.2f} (goal <= 1.5)")
        print(f"RSS last/first: {rows[-1][1] / max(first_rss, 0.001):.2f} (goal <= 1.10)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        server.close()
        log.close()


if __name__ == "__main__":
    asyncio.run(main())
