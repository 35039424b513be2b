"""schemathesis against /openapi.json: no server error, no response that breaks the schema.

It runs the ``schemathesis run`` CLI (every phase: examples, coverage, fuzzing,
stateful) on a SQLite server of its own, bounded by a fixed number of examples
per operation and a fixed seed, so a run takes well under a minute and the same
cases run each time. Two runs: the connector routes with a tenant key holding
every connector scope, then the operator routes with the admin key (last, since
its stateful phase may revoke keys it discovers).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, create_tenant, run_server

MAX_EXAMPLES = 25
SEED = 20261127

#: ``--checks all`` minus the checks that cannot hold by design, each with its reason.
EXCLUDED_CHECKS = [
    # "A request the schema allows must be accepted." The schema cannot say everything
    # the server validates: `config` is checked against the model of the type named in
    # `connector_type` (plugins add types at run time), names have a character rule,
    # cursors are opaque tokens only this server issues, and If-Match, status changes
    # and the test rate depend on state (412, 409, 429). Such refusals are 4xx problem
    # documents, which the other checks still validate.
    "positive_data_acceptance",
]


@pytest.fixture(scope="module")
def fuzz_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server only schemathesis uses: its random writes stay out of the other tests. It
    delivers no webhooks: fuzzed webhook URLs name hosts anywhere, and tests reach loopback only."""
    with run_server(
        "sqlite", tmp_path_factory.mktemp("api-schemathesis"), request, CONNECTORD_WEBHOOKS="off"
    ) as server:
        yield server


def _schemathesis(server: Server, key: str, workdir: Path, *selection: str) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{server.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(EXCLUDED_CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        # One worker: with several threads, hypothesis's ast.parse of lambdas tripped
        # CPython 3.11's "AST constructor recursion depth mismatch" (a runtime error).
        "--workers",
        "1",
        "--request-timeout",
        "30",
        # Other suites share this machine's two cores; a slow example is not a failure.
        "--suppress-health-check",
        "too_slow",
        *selection,
    ]
    # The working directory holds hypothesis's example database, away from the repository.
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout + done.stderr


def _tested(output: str) -> int:
    found = re.search(r"Tested:\s+(\d+)", output)
    return int(found.group(1)) if found else 0


def test_schemathesis_finds_nothing(fuzz_server: Server, tmp_path: Path) -> None:
    tenant = create_tenant(fuzz_server, "fuzz")
    # /events is an endless stream (tests/test_events_stream.py covers it), not a request-response.
    code, output = _schemathesis(
        fuzz_server, tenant.key, tmp_path, "--exclude-path-regex", "^/api/v1/(tenants|events$)"
    )
    assert code == 0, output[-20000:]
    assert _tested(output) == 25, output[-5000:]

    code, output = _schemathesis(
        fuzz_server, fuzz_server.admin_key, tmp_path, "--include-path-regex", "^/api/v1/tenants"
    )
    assert code == 0, output[-20000:]
    assert _tested(output) == 6, output[-5000:]
    assert "Traceback" not in fuzz_server.log_text()
