"""No probe blocks the server's event loop (issue 9, item 4).

A real ``connectord serve`` runs 16 parallel tests of one type against a
silent listener (TCP handshakes complete, nothing is ever answered) while
``/healthz`` is timed: it must keep answering promptly. botocore's client
set-up used to run on the loop and made ``/healthz`` take 3-4.5 s during 16
S3 tests. The bound is generous (a noisy 2-core machine); a blocked loop is
seconds.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_server import ServerProcess, serve
from tests.types.peers_sql import black_hole

pytestmark = pytest.mark.slow

PARALLEL = 16
#: Far above a loop that is free (a few ms), far below one blocked by a probe (seconds).
HEALTHZ_BOUND_S = 0.75


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve(tmp_path_factory.mktemp("loop"), {"CONNECTORD_TEST_CONCURRENCY": "64"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    with black_hole() as port:
        yield port


@pytest.fixture(scope="module")
def key(server: ServerProcess) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/tenants",
        json={"name": f"loop-{uuid.uuid4().hex[:8]}"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


def _definitions(port: int) -> dict[str, tuple[str, str, dict[str, Any]]]:
    silent = f"127.0.0.1:{port}"
    aws = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-example"}
    return {
        "http": ("http", f"http://{silent}/", {}),
        "s3": (
            "file",
            "s3://bucket/prefix",
            {"endpoint_url": f"http://{silent}", "region": "us-east-1", **aws},
        ),
        "lambda": (
            "serverless",
            "",
            {
                "provider": "aws_lambda",
                "function_name": "f",
                "region": "us-east-1",
                "endpoint_url": f"http://{silent}",
                **aws,
            },
        ),
        "postgresql": ("sql", f"postgresql://u@{silent}/db", {}),
        "mcp": ("mcp", f"http://{silent}/mcp", {}),
        "mqtt": ("stream", f"mqtt://{silent}", {}),
        "nats": ("stream", f"nats://{silent}", {}),
        "chroma": ("vector", f"http://{silent}", {"provider": "chroma"}),
    }


@pytest.mark.parametrize("name", list(_definitions(1)))
def test_healthz_answers_during_16_parallel_tests(
    server: ServerProcess, key: str, silent_port: int, name: str
) -> None:
    ctype, endpoint, config = _definitions(silent_port)[name]
    body = {
        "name": "t",
        "connector_type": ctype,
        "endpoint": endpoint or None,
        "config": {**config, "timeout": 4},
    }
    headers = {"Authorization": f"Bearer {key}"}

    def one_test() -> int:
        return httpx.post(
            f"{server.url}/api/v1/connectors/test", json=body, headers=headers, timeout=30
        ).status_code

    latencies: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        tests = [pool.submit(one_test) for _ in range(PARALLEL)]
        time.sleep(0.3)  # the tests are under way
        with httpx.Client(base_url=server.url) as http:
            while not all(t.done() for t in tests) and len(latencies) < 20:
                start = time.perf_counter()
                assert http.get("/healthz", timeout=30).status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.1)
        statuses = [t.result() for t in tests]
    assert statuses == [200] * PARALLEL
    assert latencies, "the tests ended before /healthz was asked"
    assert max(latencies) < HEALTHZ_BOUND_S, f"{name}: /healthz took up to {max(latencies):.2f} s"


def test_the_server_log_shows_no_probe_failure(server: ServerProcess) -> None:
    assert "failed unexpectedly" not in Path(server.log).read_text()
