"""Scale benchmark (not a test): a list page at depth, and the server's memory, with many connectors.

Seeds a store with ``--connectors`` connectors across ``--tenants`` tenants (rows written
straight into the tables, as a restored backup would hold them: the API's write rate is
``bench/api.py``'s business), one of them a big tenant of ``--big`` connectors and one a
small tenant of 1,000, then starts ``connectord serve`` (one worker) on it and prints:

- the p50 of ``GET /api/v1/connectors?limit=100`` at the start, middle and end of the
  big tenant (keyset cursors), against the same for the small tenant (goal: within 1.5x);
- the server's RSS after the load and after a bulk test of ``--bulk`` (10,000) http connectors
  against a loopback target (goal: <= 150 MB).

    .venv/bin/python bench/scale.py [--backend sqlite|postgres] [--connectors 1000000]
        [--tenants 10000] [--big 100000] [--requests 200] [--bulk 10000]

PostgreSQL: a database the script creates on the local server (CONNECTORD_TEST_PG_ADMIN).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.server
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import new_id
from connectord.paging import encode_cursor
from connectord.settings import Settings

VENV_BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("CONNECTORD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
COLUMNS = (
    "id, tenant_id, name, connector_type, status, capabilities, endpoint, config, metadata, "
    "secret_fields, version, created_at, consecutive_failures"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rows(tenant_id: str, count: int, endpoint: str, prefix: str) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [
        (
            new_id(),
            tenant_id,
            f"{prefix}{i}",
            "http",
            "registered",
            '["read"]',
            endpoint,
            "{}",
            "{}",
            "[]",
            1,
            now,
            0,
        )
        for i in range(count)
    ]


async def _seed(settings: Settings, args: argparse.Namespace, target: str) -> dict[str, Any]:
    """Tenants and keys through the admin API; the connectors straight into the table."""
    async with ConnectorsFacade(settings=settings) as facade:
        admin = Admin(facade)
        made = {}
        for name in ("big", "small", "bulk"):
            tenant, key = await admin.create_tenant(name)
            made[name] = (tenant.id, key.api_key)
        plan = [
            (made["big"][0], args.big, "https://api.example.com/"),
            (made["small"][0], 1000, "https://api.example.com/"),
            (made["bulk"][0], args.bulk, target),
        ]
        rest = max(args.connectors - args.big - 1000 - args.bulk, 0)
        others = max(args.tenants - 3, 1)
        plan += [(f"tenant-{t}", rest // others, "https://api.example.com/") for t in range(others)]
    started = time.monotonic()
    ids: dict[str, list[str]] = {}
    if settings.database_url is None:
        with sqlite3.connect(settings.sqlite_path) as conn:
            for tenant_id, count, endpoint in plan:
                rows = _rows(tenant_id, count, endpoint, "c")
                conn.executemany(f"INSERT INTO connectors ({COLUMNS}) VALUES ({','.join('?' * 13)})", rows)
                ids[tenant_id] = [r[0] for r in rows]
    else:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            for tenant_id, count, endpoint in plan:
                rows = _rows(tenant_id, count, endpoint, "c")
                await conn.copy_records_to_table(
                    "connectors", records=rows, columns=[c.strip() for c in COLUMNS.split(",")]
                )
                ids[tenant_id] = [r[0] for r in rows]
            await conn.execute("ANALYZE connectors")
        finally:
            await conn.close()
    total = sum(count for _, count, _ in plan)
    print(f"seeded {total:,} connectors in {len(plan):,} tenants in {time.monotonic() - started:.0f} s")
    return {"tenants": made, "ids": ids}


def _p50(client: httpx.Client, key: str, after: str | None, n: int) -> float:
    params: dict[str, Any] = {"limit": 100}
    if after is not None:
        params["cursor"] = encode_cursor(after)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        answer = client.get("/api/v1/connectors", params=params, headers={"Authorization": f"Bearer {key}"})
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text[:200]
        assert len(answer.json()["items"]) == 100
    return statistics.median(times)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Ok(http.server.BaseHTTPRequestHandler):
    """The bulk test's target: 200 to anything."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def run(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="connectord-scale-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    env |= {
        "CONNECTORD_DATA_DIR": str(data),
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_LOG_LEVEL": "WARNING",
        "CONNECTORD_SCHEDULER": "off",
        "CONNECTORD_TEST_CONCURRENCY": "64",
    }
    database = None
    if args.backend == "postgres":
        database = f"connectord_scale_{os.getpid()}"
        subprocess.run(["psql", PG_ADMIN, "-q", "-c", f"CREATE DATABASE {database}"], check=True)
        env["CONNECTORD_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + database
        env["CONNECTORD_SECRET_KEY"] = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(
        data_dir=data,
        database_url=env.get("CONNECTORD_DATABASE_URL"),
        secret_key=env.get("CONNECTORD_SECRET_KEY"),
    )
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    seeded = asyncio.run(_seed(settings, args, f"http://127.0.0.1:{target.server_address[1]}/"))
    port = _free_port()
    log = (data / "serve.log").open("w")
    serve = [VENV_BIN / "connectord", "serve", "--port", str(port)]
    proc = subprocess.Popen(serve, env=env, stdout=log, stderr=log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(300):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            big_id, big_key = seeded["tenants"]["big"]
            small_id, small_key = seeded["tenants"]["small"]
            big_ids, small_ids = seeded["ids"][big_id], seeded["ids"][small_id]
            n = args.requests
            small = {
                "start": _p50(client, small_key, None, n),
                "middle": _p50(client, small_key, small_ids[len(small_ids) // 2], n),
                "end": _p50(client, small_key, small_ids[-101], n),
            }
            big = {
                "start": _p50(client, big_key, None, n),
                "middle": _p50(client, big_key, big_ids[len(big_ids) // 2], n),
                "end": _p50(client, big_key, big_ids[-101], n),
            }
            print(f"{args.backend}: list page of 100, p50 ms ({n} requests each)")
            print(f"{'where':<8} {'1,000':>8} {len(big_ids):>10,}  ratio (goal <= 1.5)")
            for where in ("start", "middle", "end"):
                print(f"{where:<8} {small[where]:>8.2f} {big[where]:>10.2f}  {big[where] / small[where]:.2f}")
            print(f"RSS after the load: {_rss_mb(proc.pid):.0f} MB")
            _, bulk_key = seeded["tenants"]["bulk"]
            headers = {"Authorization": f"Bearer {bulk_key}"}
            started = client.post("/api/v1/connectors/bulk-test", json={}, headers=headers)
            assert started.status_code == 202, started.text
            where = started.headers["Location"]
            begin = time.monotonic()
            while True:
                state = client.get(where, headers=headers).json()
                if state["status"] != "running":
                    break
                time.sleep(0.5)
            took = time.monotonic() - begin
            print(
                f"bulk test of {state['total']:,}: {state['status']}, {state['ok']:,} ok in {took:.0f} s; "
                f"RSS after it: {_rss_mb(proc.pid):.0f} MB (goal <= 150)"
            )
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        target.shutdown()
        if database is not None:
            subprocess.run(["psql", PG_ADMIN, "-q", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--connectors", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--bulk", type=int, default=10_000, help="connectors of the bulk test")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
