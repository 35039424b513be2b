"""Benchmark of the REST API on the embedded SQLite store (not a test).

Seeds a tenant with 10,000 connectors, starts `serve` with one worker, and
measures with wrk (64 connections, one wrk thread, same machine) the rate and
p50/p99 latency of:

    GET  /healthz                       the ceiling of the stack
    GET  /api/v1/connectors/{id}        target >= 0.3 x /healthz, p99 <= 20 ms
    GET  /api/v1/connectors?limit=100
    POST /api/v1/connectors             target >= 1,000 durable creates/s

Each figure is printed with its ratio to /healthz from the same run.

    .venv/bin/python bench/api.py [--connectors 10000] [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

SERVE = "from connectord.api.server import serve; from connectord.settings import Settings; serve(Settings())"
BARE_APP = """
from fastapi import FastAPI
from starlette.responses import Response

app = FastAPI()


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")
"""

SERVE = "from connectord.api.server import serve; from connectord.settings import Settings; serve(Settings())"
POST_SCRIPT = """
local n = 0
local prefix = "bench-" .. tostring(math.random(1, 1000000000)) .. "-"
request = function()
  n = n + 1
  local body = '{"name":"' .. prefix .. n .. '","connector_type":"http",'
    .. '"endpoint":"https://api.example.com/v1","metadata":{"team":"bench"}}'
  return wrk.format("POST", "/api/v1/connectors", nil, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(settings: Settings, count: int) -> tuple[str, str]:
    """A tenant with ``count`` connectors; returns (api key, one connector id)."""
    async with ConnectorsFacade(settings=settings) as facade:
        _, key = await Admin(facade).create_tenant("bench")
        ids: list[str] = []
        for start in range(0, count, 500):
            batch = await asyncio.gather(
                *(
                    facade.register_connector(
                        key.tenant_id,
                        f"conn-{i:06d}",
                        "http",
                        endpoint=f"https://svc-{i}.example.com",
                        config={"password": f"pw-{i}"},
                        metadata={"team": "bench"},
                    )
                    for i in range(start, min(count, start + 500))
                )
            )
            ids.extend(c.id for c in batch)
        return key.api_key, random.choice(ids)


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def wrk(url: str, key: str, args: argparse.Namespace, script: Path | None = None) -> dict[str, float]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {key}",
    ]
    if script is not None:
        cmd += ["-H", "Content-Type: application/json", "-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rate,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def bare_fastapi(data_dir: Path, key: str, args: argparse.Namespace) -> dict[str, float]:
    """The same server stack (uvicorn, asyncio loop, httptools) with one bare route:
    what this machine allows before any connectord code runs."""
    (data_dir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--loop",
            "asyncio",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=data_dir,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        return wrk(f"http://127.0.0.1:{port}/healthz", key, args)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connectors", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--log-level", default="INFO", help="server log level (INFO logs every request)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk (make bench installs it)")

    data_dir = Path(tempfile.mkdtemp(prefix="connectord-bench-"))
    settings = Settings(data_dir=data_dir)
    started = time.perf_counter()
    key, some_id = asyncio.run(seed(settings, args.connectors))
    print(f"seeded {args.connectors} connectors in {time.perf_counter() - started:.1f} s")

    port = free_port()
    env = {
        **os.environ,
        "CONNECTORD_DATA_DIR": str(data_dir),
        "CONNECTORD_PORT": str(port),
        "CONNECTORD_LOG_LEVEL": args.log_level,
    }
    log = open(data_dir / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        script = data_dir / "post.lua"
        script.write_text(POST_SCRIPT)
        runs = {
            "GET /healthz": wrk(base + "/healthz", key, args),
            "GET /api/v1/connectors/{id}": wrk(f"{base}/api/v1/connectors/{some_id}", key, args),
            "GET /api/v1/connectors?limit=100": wrk(base + "/api/v1/connectors?limit=100", key, args),
            "POST /api/v1/connectors": wrk(base + "/api/v1/connectors", key, args, script),
        }
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()

        runs["bare FastAPI GET /healthz"] = bare_fastapi(data_dir, key, args)

    ceiling = runs["GET /healthz"]["rps"]
    print(f"\n{args.connections} connections, {args.duration} s each, one worker, SQLite,", end=" ")
    print(f"log level {args.log_level}\n")
    print(f"{'endpoint':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs healthz':>11} {'non-2xx':>8}")
    for name, r in runs.items():
        row = f"{name:36} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
        print(f"{row} {r['rps'] / ceiling:11.2f} {r['errors']:8.0f}")
    get = runs["GET /api/v1/connectors/{id}"]
    post = runs["POST /api/v1/connectors"]
    ratio = get["rps"] / ceiling
    print(f"\ntarget GET by id >= 0.30 x healthz: {ratio:.2f} ->", "met" if ratio >= 0.3 else "MISSED")
    floor_ms = args.connections / get["rps"] * 1000
    verdict = "met" if get["p99_ms"] <= 20 else "MISSED"
    target = f"target GET by id p99 <= 20 ms at {args.connections} connections"
    print(f"{target}: {get['p99_ms']:.1f} ms -> {verdict}")
    print(f"  (at {get['rps']:.0f} req/s, {args.connections} connections wait {floor_ms:.0f} ms on average)")
    verdict = "met" if post["rps"] >= 1000 else "MISSED"
    print(f"target POST >= 1000 durable creates/s: {post['rps']:.0f} -> {verdict}")
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
