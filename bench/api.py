"""Benchmark of the REST API on the embedded SQLite store (not a test).

Issue 15's measures, in one run, one server worker, wrk on the same machine
(one wrk thread, 64 connections, 10 s per endpoint):

    bare FastAPI route on uvicorn       the ceiling: one route returning a constant,
                                        run with the asyncio loop and with uvloop
                                        (both with httptools); the faster is the ceiling
    GET  /api/v1/connectors/{id}        with auth: >= 0.6 x the bare route, p99 <= 20 ms
    POST /api/v1/connectors             durable: >= 0.5 x that GET (and >= 1,500/s where
                                        the bare route does >= 7,500/s)
    GET  /api/v1/connectors?limit=100   a list page of 100: >= 0.5 x that GET
    GET  /healthz                       for reference

The bare route runs both before and after connectord's endpoints; the ceiling
is the best of those runs, so a quieter moment of a shared machine counts
against connectord, never for it. The server logs at its default level (INFO:
one access-log line per request) unless ``--log-level`` says otherwise.

    .venv/bin/python bench/api.py [--connectors 10000] [--duration 10] [--connections 64]
    .venv/bin/python bench/api.py --profile /tmp/api-prof   # py-spy of the server, one file per endpoint
    .venv/bin/python bench/api.py --json                    # one JSON object, for scripts

wrk comes from Debian (`apt-get install -y wrk`; `make bench` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
#: For reference, not the ceiling: a bare FastAPI route that does what a GET by id must at
#: least do, one path parameter and one SQLite read answered with orjson (no key check,
#: no middleware, no access log), on the asyncio loop connectord serves with.
BARE_READ_APP = """
import os, sqlite3
import orjson
from fastapi import FastAPI
from starlette.responses import Response

app = FastAPI()
db = sqlite3.connect(os.environ["BENCH_DB"], check_same_thread=False)
db.row_factory = sqlite3.Row

@app.get("/connectors/{connector_id}")
async def read(connector_id: str) -> Response:
    row = db.execute("SELECT * FROM connectors WHERE id = ?", (connector_id,)).fetchone()
    body = dict(row)
    body["config"], body["metadata"] = orjson.loads(body["config"]), orjson.loads(body["metadata"])
    return Response(orjson.dumps(body), media_type="application/json")
"""
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
GET_BY_ID = "GET /api/v1/connectors/{id}"
LIST_100 = "GET /api/v1/connectors?limit=100"
POST = "POST /api/v1/connectors"
HEALTHZ = "GET /healthz"
GET_UNCACHED = "GET /api/v1/connectors/{id}, key cache off"
BARE_READ = "reference: FastAPI route, path param, 1 SQLite read"


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


def wait_ready(url: str, path: str = "/healthz", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + path, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, key: str, args: argparse.Namespace, script: Path | None = None, *, pid: int
) -> dict[str, float]:
    """One wrk run; with the server's CPU time per request (``cpu_us``), which a busy
    machine disturbs far less than the rate: it is the figure to compare across runs."""
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
    cpu_before = cpu_seconds(pid)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rate,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "cpu_us": cpu / max(done, 1) * 1e6,
        "errors": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(g) for g in errors.groups()) if errors else 0),
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def bare_fastapi(
    data_dir: Path, key: str, args: argparse.Namespace, loop: str, app: str = BARE_APP, path: str = "/healthz"
) -> dict[str, float]:
    """One bare FastAPI route on uvicorn (httptools, ``loop``): what this machine allows
    before any connectord code runs."""
    (data_dir / "bare_app.py").write_text(app)
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
            loop,
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=data_dir,
        env={**os.environ, "BENCH_DB": str(data_dir / "connectord.db")},
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", path)
        return wrk(f"http://127.0.0.1:{port}{path}", key, args, pid=server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)


def py_spy() -> str | None:
    """py-spy from PATH or beside this interpreter (the virtualenv's bin/)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def profiled(
    pid: int, name: str, args: argparse.Namespace, measure: dict[str, object]
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server for the length of one endpoint's run (collapsed stacks,
    one file per endpoint: read with any flame-graph tool, or grep and sort)."""
    if args.profile is None:
        return None
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    measure["profile"] = str(out / f"{slug}.txt")
    return subprocess.Popen(
        [
            *(str(py_spy()), "record", "--pid", str(pid), "--duration", str(args.duration)),
            *("--format", "raw", "--rate", "250", "--output", str(measure["profile"]), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def connectord_runs(
    data_dir: Path,
    key: str,
    some_id: str,
    args: argparse.Namespace,
    extra_env: dict[str, str] | None = None,
    only: tuple[str, ...] | None = None,
    suffix: str = "",
) -> dict[str, dict[str, float]]:
    """One server, the endpoints of ``plan`` (or ``only`` those); ``suffix`` tells this
    server's profiles from another's of the same endpoint (one file per run)."""
    port = free_port()
    env = {
        **os.environ,
        "CONNECTORD_DATA_DIR": str(data_dir),
        "CONNECTORD_PORT": str(port),
        "CONNECTORD_LOG_LEVEL": args.log_level,
        # The scheduler has nothing due (no connector was ever tested), but keep it from
        # waking during the runs at all.
        "CONNECTORD_SCHEDULER": "off",
        **(extra_env or {}),
    }
    log = open(data_dir / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    script = data_dir / "post.lua"
    script.write_text(POST_SCRIPT)
    plan: list[tuple[str, str, Path | None]] = [
        (HEALTHZ, base + "/healthz", None),
        (GET_BY_ID, f"{base}/api/v1/connectors/{some_id}", None),
        (LIST_100, base + "/api/v1/connectors?limit=100", None),
        (POST, base + "/api/v1/connectors", script),
    ]
    if only is not None:
        plan = [p for p in plan if p[0] in only]
    runs: dict[str, dict[str, float]] = {}
    try:
        wait_ready(base)
        for name, url, lua in plan:
            extra: dict[str, object] = {}
            spy = profiled(server.pid, name + suffix, args, extra)
            runs[name] = wrk(url, key, args, lua, pid=server.pid)
            if spy is not None:
                spy.wait(timeout=args.duration + 30)
                print(f"profile of {name + suffix}: {extra['profile']}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return runs


def report(runs: dict[str, dict[str, float]], args: argparse.Namespace) -> dict[str, object]:
    bare_name = max((n for n in runs if n.startswith("bare")), key=lambda n: runs[n]["rps"])
    bare, get = runs[bare_name]["rps"], runs[GET_BY_ID]
    post, page = runs[POST]["rps"], runs[LIST_100]["rps"]
    checks = [
        ("GET by id with auth / bare route", get["rps"] / bare, ">= 0.60", get["rps"] / bare >= 0.6),
        (f"GET by id p99 at {args.connections} connections, ms", get["p99_ms"], "<= 20", get["p99_ms"] <= 20),
        ("POST durable / GET by id", post / get["rps"], ">= 0.50", post / get["rps"] >= 0.5),
        (
            "POST durable, req/s (goal where the bare route >= 7,500/s)",
            post,
            ">= 1500" if bare >= 7500 else f"n/a (bare {bare:.0f}/s)",
            post >= 1500 or bare < 7500,
        ),
        ("list page of 100 / GET by id", page / get["rps"], ">= 0.50", page / get["rps"] >= 0.5),
        (
            "GET by id, key cache on / off (kept if > 1)",
            get["rps"] / runs[GET_UNCACHED]["rps"],
            "> 1.00",
            get["rps"] > runs[GET_UNCACHED]["rps"],
        ),
    ]
    return {"ceiling": bare_name, "runs": runs, "checks": checks}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connectors", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--log-level", default="INFO", help="server log level (INFO logs every request)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server into DIR, one file per endpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk (make bench installs it)")
    if args.profile is not None and py_spy() is None:
        raise SystemExit("py-spy is needed for --profile: pip install -e '.[test]'")

    data_dir = Path(tempfile.mkdtemp(prefix="connectord-bench-"))
    try:
        started = time.perf_counter()
        key, some_id = asyncio.run(seed(Settings(data_dir=data_dir), args.connectors))
        print(
            f"seeded {args.connectors} connectors in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        runs = {
            "bare FastAPI route, uvicorn asyncio (before)": bare_fastapi(data_dir, key, args, "asyncio"),
            "bare FastAPI route, uvicorn uvloop (before)": bare_fastapi(data_dir, key, args, "uvloop"),
        }
        runs.update(connectord_runs(data_dir, key, some_id, args))
        # The key cache's worth (docs/security.md): the same GET asking the store for the key.
        uncached = connectord_runs(
            data_dir,
            key,
            some_id,
            args,
            {"CONNECTORD_KEY_CACHE_TTL": "0"},
            (GET_BY_ID,),
            GET_UNCACHED.removeprefix(GET_BY_ID),
        )
        runs[GET_UNCACHED] = uncached[GET_BY_ID]
        runs[BARE_READ] = bare_fastapi(
            data_dir, key, args, "asyncio", BARE_READ_APP, f"/connectors/{some_id}"
        )
        runs["bare FastAPI route, uvicorn asyncio (after)"] = bare_fastapi(data_dir, key, args, "asyncio")
        runs["bare FastAPI route, uvicorn uvloop (after)"] = bare_fastapi(data_dir, key, args, "uvloop")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    result = report(runs, args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"\n{args.connections} connections, {args.duration} s each, one worker, SQLite, ", end="")
    print(f"server log level {args.log_level}\n")
    print(f"{'endpoint':46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'errors':>7}")
    for name, r in runs.items():
        print(
            f"{name:46} {r['rps']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['cpu_us']:10.0f} "
            f"{r['errors']:7.0f}"
        )
    print(f"\nceiling: {result['ceiling']}\n")
    reference, ceiling = runs[BARE_READ]["rps"], runs[str(result["ceiling"])]["rps"]
    print(f"GET by id / the reference route: {runs[GET_BY_ID]['rps'] / reference:.2f}")
    print(f"the reference route / the ceiling: {reference / ceiling:.2f}\n")
    for label, value, goal, ok in result["checks"]:  # type: ignore[attr-defined]
        print(f"{label:60} {value:8.2f}  goal {goal:10} {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
