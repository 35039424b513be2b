"""Benchmark of the credential-injecting HTTP proxy (not a test).

Issue 12's measure, in one run: ``GET`` through ``/api/v1/connectors/{id}/proxy/...``
to a loopback upstream, against the same ``GET`` straight to that upstream, from
the same load tool (wrk, one thread) at the same connection count:

    added latency  proxy p50 - direct p50, and the same at p99 (goal: p50 <= 2 ms at 16)
    throughput     proxy requests/s / direct requests/s        (goal: >= 0.5)
    server CPU     the proxy's user + system time per proxied request (its /proc stat),
                   which the other processes of a shared machine hardly move

Two upstreams, each in its own process: ``raw``, a minimal keep-alive HTTP/1.1 server
(an asyncio protocol on uvloop, a fixed answer), never the bottleneck of either run, so
its ratio is the proxy against what the machine can do at all; and ``aiohttp``, the same
answer from an aiohttp.web route, a typical Python service behind a proxy. Beside the
proxy, the same GETs go through a **bare proxy**: an aiohttp.web route forwarding over
one pooled session with a fixed token added and nothing else: what a minimal Python proxy
on the same client library does here, so the figures say how far connectord's is from it. Then
the proxy is one ``connectord serve`` worker (SQLite, default INFO log: one access-log
line per request) whose connector uses bearer auth, so every proxied request pays for
the key check, the connector read and decryption, the egress check and the added
credential. The direct run goes first and again last; the better of the two is the
figure, so a quieter moment of a shared machine counts against the proxy, never for it.
The load average is printed before and after: wrk, the server and the upstream share
the machine's cores.

    .venv/bin/python bench/proxy.py [--duration 10] [--connections 16] [--upstream raw|aiohttp|both] [--json]
    .venv/bin/python bench/proxy.py --upstream aiohttp --profile /tmp/proxy-prof   # py-spy of the server

wrk comes from Debian (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from api import profiled, py_spy

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

SERVE = "from connectord.api.server import serve; from connectord.settings import Settings; serve(Settings())"
UPSTREAM = r"""
import asyncio, sys
BODY = b'{"items": [1, 2, 3], "next": null}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:  # GETs only: no body follows the headers
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(ANSWER)

async def main(port):
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()

try:
    import uvloop
    uvloop.run(main(int(sys.argv[1])))
except ImportError:
    asyncio.run(main(int(sys.argv[1])))
"""
#: A typical Python service: the same answer from an aiohttp.web route (its own access log off).
AIOHTTP_UPSTREAM = r"""
import sys
from aiohttp import web

BODY = b'{"items": [1, 2, 3], "next": null}'

async def items(request):
    return web.Response(body=BODY, content_type="application/json")

app = web.Application()
app.router.add_get("/v1/items", items)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
UPSTREAMS = {"raw": UPSTREAM, "aiohttp": AIOHTTP_UPSTREAM}
#: The ceiling of any Python proxy here: an aiohttp.web route forwarding a GET over one
#: pooled ClientSession with a fixed bearer token added, and nothing else (no key check,
#: no store, no egress check, no bounds, no streaming, no access log).
BARE_PROXY = r"""
import sys
import aiohttp
from aiohttp import web

UPSTREAM = sys.argv[2]

async def start(app):
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

async def stop(app):
    await app["session"].close()

async def forward(request):
    headers = {"Authorization": "Bearer bench-token"}
    async with request.app["session"].get(UPSTREAM + request.match_info["rest"], headers=headers) as r:
        return web.Response(body=await r.read(), status=r.status, content_type=r.content_type)

app = web.Application()
app.on_startup.append(start)
app.on_cleanup.append(stop)
app.router.add_get("/proxy/{rest:.*}", forward)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(settings: Settings, upstream: str) -> tuple[str, str]:
    """A tenant, a ``connectors:use`` key and an http connector on the upstream (bearer auth)."""
    async with ConnectorsFacade(settings=settings) as facade:
        admin = Admin(facade)
        tenant, _ = await admin.create_tenant("bench")
        key = await admin.create_key(tenant.id, name="use", scopes=("connectors:use",), actor="bench")
        info = await facade.register_connector(
            tenant.id,
            "upstream",
            "http",
            endpoint=upstream,
            config={"auth": {"kind": "bearer", "token": "bench-token"}},
        )
        return key.api_key, info.id


def wait_answers(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    """Until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def wrk(url: str, connections: int, duration: int, key: str | None = None) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms, errors (socket errors and non-2xx)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if key is not None:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rate,
        "requests": done,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "errors": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(g) for g in errors.groups()) if errors else 0),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def measure(args: argparse.Namespace, data_dir: Path, kind: str) -> dict[str, object]:
    """Start the upstream and the server, run wrk direct / proxy / direct at each count."""
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAMS[kind], str(upstream_port)])
    direct_url = f"http://127.0.0.1:{upstream_port}/v1/items"
    settings = Settings(data_dir=data_dir)
    key, connector_id = asyncio.run(seed(settings, f"http://127.0.0.1:{upstream_port}/v1"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")},
        "CONNECTORD_DATA_DIR": str(data_dir),
        "CONNECTORD_PORT": str(port),
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_SCHEDULER": "off",
        "CONNECTORD_WEBHOOKS": "off",
        # Far above what one run sends: the per-key limit is not what is measured.
        "CONNECTORD_PROXY_RATE": "100000000",
        "CONNECTORD_PROXY_CONCURRENCY": "1024",
    }
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=log, stderr=subprocess.STDOUT)
    proxy_url = f"http://127.0.0.1:{port}/api/v1/connectors/{connector_id}/proxy/items"
    bare_port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE_PROXY, str(bare_port), f"http://127.0.0.1:{upstream_port}/v1/"]
    )
    bare_url = f"http://127.0.0.1:{bare_port}/proxy/items"
    load_before = os.getloadavg()
    runs: dict[str, dict[str, dict[str, float]]] = {}
    try:
        wait_answers(direct_url)
        wait_answers(proxy_url, {"Authorization": f"Bearer {key}"})
        wait_answers(bare_url)
        for connections in sorted({args.connections, 1}, reverse=True):
            wrk(proxy_url, connections, 2, key)  # warm-up: pools, caches, the JIT-less interpreter's dicts
            first = wrk(direct_url, connections, args.duration)
            extra: dict[str, object] = {}
            spy = profiled(server.pid, f"proxy-{kind}-{connections}", args, extra)
            cpu = cpu_seconds(server.pid)
            proxied = wrk(proxy_url, connections, args.duration, key)
            proxied["cpu_ms"] = (cpu_seconds(server.pid) - cpu) * 1000 / max(proxied["requests"], 1)
            if spy is not None:
                spy.wait(timeout=args.duration + 30)
                print(f"profile of the proxied run: {extra['profile']}", file=sys.stderr)
            ceiling = wrk(bare_url, connections, args.duration)
            last = wrk(direct_url, connections, args.duration)
            direct = max(first, last, key=lambda r: r["rps"])
            runs[str(connections)] = {"direct": direct, "proxy": proxied, "bare proxy": ceiling}
    finally:
        for proc in (server, bare, upstream):
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
    return {"upstream": kind, "load_before": load_before, "load_after": os.getloadavg(), "runs": runs}


def report(result: dict[str, object], args: argparse.Namespace) -> None:
    """Print the figures, one block per connection count."""
    before = ", ".join(f"{x:.2f}" for x in result["load_before"])  # type: ignore[attr-defined]
    after = ", ".join(f"{x:.2f}" for x in result["load_after"])  # type: ignore[attr-defined]
    print(f"\n== upstream {result['upstream']}: {os.cpu_count()} cores, load {before} before, {after} after")
    runs = result["runs"]
    assert isinstance(runs, dict)
    for connections, run in runs.items():
        direct, proxied, bare = run["direct"], run["proxy"], run["bare proxy"]
        print(f"{connections} connection(s), {args.duration} s per run")
        for name, r in (("direct", direct), ("proxy", proxied), ("bare proxy", bare)):
            print(
                f"  {name:<10} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
                f"  errors {r['errors']:.0f}"
            )
        for name, r in (("proxy", proxied), ("bare proxy", bare)):
            ratio = r["rps"] / direct["rps"]
            added50 = r["p50_ms"] - direct["p50_ms"]
            added99 = r["p99_ms"] - direct["p99_ms"]
            print(
                f"  {name:<10} added latency p50 {added50:.3f} ms, p99 {added99:.3f} ms;"
                f" throughput ratio {ratio:.2f}"
            )
        print(f"  proxy / bare proxy throughput {proxied['rps'] / bare['rps']:.2f}")
        print(f"  server CPU per proxied request {proxied['cpu_ms']:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (and 1)")
    parser.add_argument(
        "--upstream", choices=[*UPSTREAMS, "both"], default="both", help="the upstream server (default both)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server's proxied runs into DIR")
    args = parser.parse_args()
    if args.profile is not None and py_spy() is None:
        raise SystemExit("py-spy is needed for --profile: pip install -e '.[test]'")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    kinds = list(UPSTREAMS) if args.upstream == "both" else [args.upstream]
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
            results.append(measure(args, Path(tmp), kind))
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            report(result, args)


if __name__ == "__main__":
    main()
