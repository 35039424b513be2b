"""SIGTERM with a test in flight (issue 14.2): the server stops accepting, lets the test run
for the drain bound (CONNECTORD_DRAIN_TIMEOUT), records the test it had to cut as
``cancelled`` (its status and failure count untouched), and exits 0."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx

from tests.cli_server import CLI_ENV, make_key, start_serve


def test_sigterm_cuts_a_test_past_the_drain_bound_records_it_cancelled_and_exits_0(tmp_path: Path) -> None:
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env |= {
        "CONNECTORD_DATA_DIR": str(tmp_path / "data"),
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
        "CONNECTORD_SCHEDULER": "off",
        "CONNECTORD_DRAIN_TIMEOUT": "1",
    }
    log = tmp_path / "serve.log"
    proc, url = start_serve(env, log)
    try:
        key = make_key(env)
        headers = {"Authorization": f"Bearer {key}"}
        body = {
            "name": "slow",
            "connector_type": "http",
            "endpoint": f"http://127.0.0.1:{silent.getsockname()[1]}/",
            "config": {"timeout": 30},
        }
        made = httpx.post(f"{url}/api/v1/connectors", json=body, headers=headers, timeout=10)
        assert made.status_code == 201, made.text
        connector = made.json()["id"]
        answers: list[object] = []

        def test_it() -> None:
            try:
                answers.append(
                    httpx.post(f"{url}/api/v1/connectors/{connector}/test", headers=headers, timeout=40)
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        tester = threading.Thread(target=test_it)
        tester.start()
        time.sleep(1.0)  # the probe is connected to the silent server and waiting
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - stopping
        tester.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        silent.close()
    assert code == 0, log.read_text()
    assert took < 1 + 10, f"the server took {took:.1f} s to stop (drain bound: 1 s)"
    assert answers, "the test request never ended"
    assert not (isinstance(answers[0], httpx.Response) and answers[0].status_code == 200)

    proc, url = start_serve(env, log)
    try:
        history = httpx.get(
            f"{url}/api/v1/connectors/{connector}/history", headers=headers, timeout=10
        ).json()
        info = httpx.get(f"{url}/api/v1/connectors/{connector}", headers=headers, timeout=10).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    (cut,) = history["items"]
    assert cut["success"] is False
    assert cut["details"]["error_kind"] == "cancelled"
    assert info["status"] == "registered"  # a cut test says nothing of the connector
