"""``/healthz`` says the process is alive; ``/readyz`` says it can serve, and answers 503 with
the reason as a problem document when the database is down or its schema is not at head
(issue 14.1). The PostgreSQL case runs a private instance the test starts and stops."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.cli_server import serve

if TYPE_CHECKING:
    from tests.private_pg import PrivatePg

pytest_plugins = ("tests.private_pg",)  # the private_pg fixture


def _ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def test_ready_on_sqlite_and_not_ready_when_the_schema_is_behind(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as server:
        answer = _ready(server.url)
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
        with sqlite3.connect(server.data_dir / "connectord.db") as conn:
            (head,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            conn.execute("UPDATE alembic_version SET version_num = '0001'")
        answer = _ready(server.url)
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["type"] == "urn:connectord:problem:not-ready"
        assert "schema is at 0001" in problem["detail"]
        assert head in problem["detail"]
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # alive all along


def _env(pg: PrivatePg, **extra: str) -> dict[str, str]:
    ring = base64.b64encode(os.urandom(32)).decode()
    return {"CONNECTORD_DATABASE_URL": pg.url, "CONNECTORD_SECRET_KEY": ring, **extra}


def test_readyz_follows_the_database_down_and_back(tmp_path: Path, private_pg: PrivatePg) -> None:
    with serve(tmp_path / "data", _env(private_pg)) as server:
        assert _ready(server.url).status_code == 200
        private_pg.stop()
        start = time.monotonic()
        answer = _ready(server.url)
        took = time.monotonic() - start
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"] == "urn:connectord:problem:not-ready"
        assert "database" in answer.json()["detail"]
        assert took < 8, f"/readyz took {took:.1f} s with the database down"
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        private_pg.start()
        _wait_ready(server.url)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 20
    while _ready(url).status_code != 200:  # the pool reconnects by itself
        assert time.monotonic() < deadline, "not ready again 20 s after the database returned"
        time.sleep(0.2)


def test_a_stopped_or_stuck_database_answers_503_quickly_and_the_server_recovers(
    tmp_path: Path, private_pg: PrivatePg
) -> None:
    """Issue 14.6: every database call has a bound (CONNECTORD_DB_TIMEOUT)."""
    with serve(tmp_path / "data", _env(private_pg, CONNECTORD_DB_TIMEOUT="2")) as server:
        # The key lookup is a database call on every request: with the database up an unknown
        # key is 401, with it down or stuck the request must answer 503 within the bound.
        headers = {"Authorization": "Bearer cdk_" + os.urandom(16).hex()}
        listing = f"{server.url}/api/v1/connectors"
        assert httpx.get(listing, headers=headers, timeout=10).status_code == 401
        for cut, restore in ((private_pg.pause, private_pg.resume), (private_pg.stop, private_pg.start)):
            cut()
            try:
                start = time.monotonic()
                answer = httpx.get(listing, headers=headers, timeout=30)
                took = time.monotonic() - start
            finally:
                restore()
            assert answer.status_code == 503, answer.text
            assert answer.json()["type"] == "urn:connectord:problem:store-unavailable"
            assert took < 6, f"{cut.__name__}: a request took {took:.1f} s (bound: 2 s)"
            _wait_ready(server.url)
            assert httpx.get(listing, headers=headers, timeout=10).status_code == 401
