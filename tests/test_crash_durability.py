"""SIGKILL during writes loses no acknowledged write (issue 14.2): four clients create
connectors against a real ``connectord serve``, the server is killed with SIGKILL while
they write, restarted on the same store, and every connector it acknowledged (201) is
there. SQLite (durable commits: WAL with synchronous=FULL) and PostgreSQL (transactions)."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.cli_server import CLI_ENV, make_key, start_serve


def _writer(url: str, key: str, n: int, acked: list[str]) -> None:
    """POST until the server goes away; keep the ids it acknowledged."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=5) as client:
        for i in range(100_000):
            body = {"name": f"w{n}-{i}", "connector_type": "http", "endpoint": "http://127.0.0.1:9/"}
            try:
                answer = client.post("/api/v1/connectors", json=body)
            except httpx.TransportError:
                return
            if answer.status_code != 201:
                return
            acked.append(answer.json()["id"])


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_during_writes_loses_no_acknowledged_write(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env |= {"CONNECTORD_DATA_DIR": str(tmp_path / "data"), "CONNECTORD_SCHEDULER": "off"}
    if backend == "postgres":
        env["CONNECTORD_DATABASE_URL"] = request.getfixturevalue("fresh_pg_url")
        env["CONNECTORD_SECRET_KEY"] = base64.b64encode(os.urandom(32)).decode()
    log = tmp_path / "serve.log"
    proc, url = start_serve(env, log)
    try:
        key = make_key(env)
        acked: list[list[str]] = [[] for _ in range(4)]
        writers = [threading.Thread(target=_writer, args=(url, key, n, acked[n])) for n in range(4)]
        for w in writers:
            w.start()
        deadline = time.monotonic() + 20
        while sum(map(len, acked)) < 200:
            assert time.monotonic() < deadline, "the writers did not get going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for w in writers:
            w.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {cid for ids in acked for cid in ids}
    proc, url = start_serve(env, log)
    try:
        found: set[str] = set()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            cursor = None
            while True:
                params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                answer = client.get("/api/v1/connectors", params=params)
                assert answer.status_code == 200, answer.text
                page = answer.json()
                found |= {item["id"] for item in page["items"]}
                cursor = page.get("next_cursor")
                if not cursor:
                    break
    finally:
        proc.terminate()
        proc.wait(10)
    assert len(done) >= 200
    missing = done - found
    assert not missing, f"{len(missing)} acknowledged writes were lost"
