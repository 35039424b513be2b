"""Benchmark of the web console's connectors list (not a test).

Seeds a tenant with 10,000 connectors on the embedded SQLite store (the first
page's connectors with a few tests each, so the rows' last test and 24 h uptime
are computed), starts `serve` with one worker, signs in as a browser does, and
measures the time to first byte of (one request at a time, keep-alive):

    GET /connectors                       the first page (50 rows)
    GET /connectors?cursor=...            a page near the end (keyset: same cost)
    GET /connectors?q=...&type=http       a name search with a filter
    GET /connectors/{id}                  a connector's page (chart, health, audit)

Time to first byte is from the request's last byte sent to the answer's first
byte received; the page's whole time (to its last byte) is printed beside it.

    .venv/bin/python bench/console.py [--connectors 10000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.lifecycle import changes_after_test
from connectord.model import AuditEvent, TestResult, new_id, utcnow
from connectord.paging import encode_cursor
from connectord.settings import Settings

SERVE = "from connectord.api.server import serve; from connectord.settings import Settings; serve(Settings())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(settings: Settings, count: int) -> tuple[str, list[str]]:
    """A tenant with ``count`` connectors, the first 50 tested 4 times each: (key, ids)."""
    async with ConnectorsFacade(settings=settings) as facade:
        _, key = await Admin(facade).create_tenant("bench")
        ids: list[str] = []
        for start in range(0, count, 500):
            batch = await asyncio.gather(
                *(
                    facade.register_connector(
                        key.tenant_id,
                        f"conn-{i:06d}",
                        "http" if i % 2 else "custom",
                        endpoint=f"https://svc-{i}.example.com" if i % 2 else f"svc-{i}.example.com:5432",
                        metadata={"team": "bench"},
                    )
                    for i in range(start, min(count, start + 500))
                )
            )
            ids.extend(c.id for c in batch)
        for n, connector_id in enumerate(ids[:50] * 4):
            ok = n % 7 != 0
            result = TestResult(ok, connector_id, 10 + n % 30, None if ok else "refused", {}, utcnow())
            audit = AuditEvent(new_id(), key.tenant_id, "bench", "connector.test", connector_id, utcnow(), {})
            await facade.store.record_test(
                key.tenant_id,
                result,
                audit,
                lambda c, r=result: changes_after_test(c, r, None),
                failure_threshold=3,
            )
        return key.api_key, ids


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def sign_in(conn: http.client.HTTPConnection, key: str) -> str:
    """The session cookie, got as a browser gets it (the sign-in form's token and cookie)."""
    conn.request("GET", "/")
    page = conn.getresponse()
    html = page.read().decode()
    form_cookie = page.getheader("set-cookie", "").split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    body = urllib.parse.urlencode({"api_key": key, "csrf_token": token})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": form_cookie}
    conn.request("POST", "/sign-in", body, headers)
    answer = conn.getresponse()
    answer.read()
    if answer.status != 303:
        raise SystemExit(f"sign-in failed: {answer.status}")
    cookies = [c.split(";")[0] for c in answer.headers.get_all("set-cookie") or []]
    return next(c for c in cookies if c.startswith("connectord_session=") and len(c) > 20)


def measure(conn: http.client.HTTPConnection, cookie: str, path: str, n: int) -> dict[str, float]:
    """``n`` GETs of ``path`` one after another: TTFB and total times, in milliseconds."""
    ttfb: list[float] = []
    total: list[float] = []
    size = 0
    for _ in range(n):
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("Cookie", cookie)
        conn.endheaders()
        sent = time.perf_counter()
        response = conn.getresponse()  # returns once the status line and headers are in
        first = time.perf_counter()
        body = response.read()
        done = time.perf_counter()
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status}")
        size = len(body)
        ttfb.append((first - sent) * 1000)
        total.append((done - sent) * 1000)
    ttfb.sort()
    return {
        "p50": statistics.median(ttfb),
        "p95": ttfb[int(len(ttfb) * 0.95) - 1],
        "mean": statistics.fmean(ttfb),
        "total_p50": statistics.median(total),
        "kb": size / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connectors", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="requests per page")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="connectord-bench-console-"))
    settings = Settings(data_dir=data_dir)
    started = time.perf_counter()
    key, ids = asyncio.run(seed(settings, args.connectors))
    print(f"seeded {args.connectors} connectors in {time.perf_counter() - started:.1f} s")

    port = free_port()
    env = {
        **os.environ,
        "CONNECTORD_DATA_DIR": str(data_dir),
        "CONNECTORD_PORT": str(port),
        "CONNECTORD_LOG_LEVEL": "WARNING",
        "CONNECTORD_SCHEDULER": "off",
    }
    log = open(data_dir / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        cookie = sign_in(conn, key)
        near_end = encode_cursor(ids[-60])  # the page that starts 59 rows before the end
        pages = {
            "first page": "/connectors",
            "page near the end": f"/connectors?cursor={near_end}",
            "search + filter": "/connectors?q=conn-0099&type=http",
            "connector page": f"/connectors/{ids[0]}",
        }
        measure(conn, cookie, "/connectors", 20)  # warm up
        print(f"{'page':<20} {'TTFB p50':>9} {'p95':>8} {'mean':>8} {'whole p50':>10} {'size':>8}")
        for name, path in pages.items():
            m = measure(conn, cookie, path, args.requests)
            print(
                f"{name:<20} {m['p50']:>7.2f}ms {m['p95']:>6.2f}ms {m['mean']:>6.2f}ms "
                f"{m['total_p50']:>8.2f}ms {m['kb']:>6.1f}KB"
            )
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


if __name__ == "__main__":
    main()
