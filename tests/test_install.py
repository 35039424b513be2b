"""A plain ``pip install .`` (no extras) tests every type, and starts the PostgreSQL store.

The package is installed in a fresh virtual environment (pip's cache makes it
about a minute), then a script run by that environment's Python tests one
definition per type against a real local server of its default provider:
PostgreSQL, MariaDB, the NATS, Redis, MQTT and AMQP brokers already running,
moto's server for S3 and Lambda, an MCP server and an HTTP server (those three
run from the dev environment: they are peers, not part of the install). A
closed port stands in where no server is needed to prove the driver loads
(Kafka, Chroma: a refused connection is a real attempt). Milvus's driver is a
named extra, so without it the test answers ``unsupported`` with the command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.types import peers_mcp
from tests.types.peers_file import BUCKET, PREFIX, start_moto
from tests.types.peers_http import closed_port
from tests.types.peers_vector import ServerProcess, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MILVUS_HINT = "pip install 'connectord[milvus]'"

# Run by the fresh environment's Python: argv[1] is a JSON object of settings and definitions.
PROBE_SCRIPT = """
import asyncio, json, sys
from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

async def main() -> None:
    job = json.loads(sys.argv[1])
    results = {}
    async with ConnectorsFacade(settings=Settings(**job["settings"])) as facade:
        tenant, _ = await Admin(facade).create_tenant("install")
        for name, (ctype, endpoint, config) in job["definitions"].items():
            result = await facade.test_definition(tenant.id, name, ctype, endpoint, config)
            results[name] = result.to_dict()
        results["types"] = [facade.registry.describe(t) for t in facade.registry.types().values()]
    print(json.dumps(results))

asyncio.run(main())
"""


def _run(args: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    noise = "is ignored: it is neither a file nor a directory"  # this machine's pip index settings
    stderr = "\n".join(line for line in done.stderr.splitlines() if noise not in line)
    assert done.returncode == 0, f"{args[:3]} exited {done.returncode}:\n{stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtual environment where ``pip install .`` ran, with no extras."""
    folder = tmp_path_factory.mktemp("plain-install")
    # A copy of the sources: building in the work tree would leave a build/ folder in it.
    source = folder / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "venv", str(folder / "venv")], timeout=120)
    python = folder / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)], timeout=400)
    return python


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_site() -> Iterator[str]:
    """A standard-library HTTP server answering 200 on every GET."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    """An MCP server (streamable HTTP) run by the dev environment."""
    peer = peers_mcp.start("streamable-http", free_port(), "/mcp")
    yield peer.url
    peer.stop()


@pytest.fixture(scope="module")
def moto() -> Iterator[ServerProcess]:
    """moto's server (S3 with a bucket, Lambda), any credentials accepted."""
    server = start_moto(enforce_auth=False)
    yield server
    server.stop()


def _definitions(http_site: str, mcp_url: str, moto: ServerProcess, root: Path) -> dict[str, Any]:
    closed = closed_port()
    aws = {"endpoint_url": moto.info["endpoint"], "region": "eu-west-1", "access_key_id": "testing",
           "secret_access_key": "testing"}  # fmt: skip
    (root / "data.db").touch()
    return {
        "http": ("http", http_site + "/", {}),
        "sql-postgresql": ("sql", "postgresql://postgres@127.0.0.1:5432/postgres", {}),
        "sql-mysql": ("sql", "mysql://root@127.0.0.1:3306/test", {}),
        "sql-sqlite": ("sql", f"sqlite:///{root}/data.db", {}),
        "mcp": ("mcp", mcp_url, {}),
        "vector-pgvector": (
            "vector",
            "postgresql://postgres@127.0.0.1:5432/postgres",
            {"provider": "pgvector"},
        ),
        "vector-chroma": ("vector", f"http://127.0.0.1:{closed}", {"provider": "chroma"}),
        # A listener (any): the probe connects before it loads its driver.
        "vector-milvus": ("vector", http_site, {"provider": "milvus"}),
        "file-s3": ("file", f"s3://{BUCKET}/{PREFIX}", aws),
        "file-local": ("file", f"file://{root}", {}),
        "serverless-http": ("serverless", http_site, {"provider": "http"}),
        "serverless-lambda": (
            "serverless",
            None,
            {"provider": "aws_lambda", "function_name": "absent", **aws},
        ),
        "stream-nats": ("stream", "nats://127.0.0.1:4222", {}),
        "stream-redis": ("stream", "redis://127.0.0.1:6379", {}),
        "stream-mqtt": ("stream", "mqtt://127.0.0.1:1883", {}),
        "stream-amqp": ("stream", "amqp://guest@127.0.0.1:5672/", {"password": "guest"}),
        "stream-kafka": ("stream", f"kafka://127.0.0.1:{closed}", {}),
        "custom": ("custom", http_site.removeprefix("http://"), {}),
    }


# What a real attempt may answer where success is not the point (no vector extension, no such function...).
REACHED = {
    "vector-pgvector": {"unsupported", "not_found", "protocol"},
    "vector-chroma": {"refused"},
    "serverless-lambda": {"not_found"},
    "stream-kafka": {"refused"},
}


def test_every_type_makes_a_real_attempt(
    plain_python: Path, http_site: str, mcp_url: str, moto: ServerProcess, tmp_path: Path
) -> None:
    settings = {
        # Beside the root, not in it: a root holding the data directory is refused.
        "data_dir": str(tmp_path.with_name(tmp_path.name + "-data")),
        "egress_allow": ["127.0.0.0/8"],
        "file_roots": [str(tmp_path)],
    }
    job = {"settings": settings, "definitions": _definitions(http_site, mcp_url, moto, tmp_path)}
    results = json.loads(_run([str(plain_python), "-c", PROBE_SCRIPT, json.dumps(job)], timeout=180))
    types = {t["name"]: t for t in results.pop("types")}
    for name, result in results.items():
        kind = (result.get("details") or {}).get("error_kind")
        if name == "vector-milvus":
            assert kind == "unsupported", result
            assert MILVUS_HINT in result["error"], result
        elif name in REACHED:
            assert kind in REACHED[name], (name, result)
        else:
            assert result["success"], (name, result)
    drivers = {(t, d["provider"]): d for t, info in types.items() for d in info["drivers"]}
    assert drivers["vector", "milvus"] == {"provider": "milvus", "installed": False, "install": MILVUS_HINT}
    assert all(d["installed"] for key, d in drivers.items() if key != ("vector", "milvus")), drivers


def test_types_command_shows_what_is_installed(plain_python: Path, tmp_path: Path) -> None:
    cli = plain_python.parent / "connectord"
    out = _run([str(cli), "types", "-o", "json"], timeout=60, env={"CONNECTORD_DATA_DIR": str(tmp_path)})
    vector = next(t for t in json.loads(out) if t["name"] == "vector")
    milvus = next(d for d in vector["drivers"] if d["provider"] == "milvus")
    assert milvus == {"provider": "milvus", "installed": False, "install": MILVUS_HINT}


def test_postgres_store_starts(
    plain_python: Path, pg_url: str, secret_key_value: str, tmp_path: Path
) -> None:
    script = (
        "import asyncio\n"
        "from connectord.facade import ConnectorsFacade\n"
        "async def main():\n"
        "    async with ConnectorsFacade() as facade:\n"
        "        print(len(await facade.list_connectors('nobody')))\n"
        "asyncio.run(main())\n"
    )
    env = {"CONNECTORD_DATABASE_URL": pg_url, "CONNECTORD_SECRET_KEY": secret_key_value,
           "CONNECTORD_DATA_DIR": str(tmp_path)}  # fmt: skip
    assert _run([str(plain_python), "-c", script], timeout=120, env=env).strip() == "0"


def test_serve_from_a_plain_install_serves_the_console_is_ready_and_stops_cleanly(
    plain_python: Path, tmp_path: Path
) -> None:
    """What the README's `make run` shows, from `pip install .` alone: the console at `/` (its
    templates and static files come with the wheel), `/readyz`, and a SIGTERM that exits 0."""
    import httpx

    port = free_port()
    env = {**os.environ, "CONNECTORD_DATA_DIR": str(tmp_path / "data"), "CONNECTORD_SCHEDULER": "on"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(plain_python.parent / "connectord"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200
        assert 'name="api_key"' in page.text
        assert 'name="csrf_token"' in page.text
        styles = re.findall(r'href="(/[^"]+\.css)"', page.text)
        assert styles, page.text[:500]
        assert httpx.get(url + styles[0], timeout=10).status_code == 200
        assert "this process owns it" in log.read_text()  # the SQLite scheduler says where it runs
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(40)
    assert code == 0, log.read_text()
