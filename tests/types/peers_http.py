"""Real HTTP peers for the http probe tests, all on 127.0.0.1.

- httpbin (the PyPI app) in its own process, served by werkzeug's threaded
  server, over HTTP and over HTTPS with a certificate from a trustme CA made
  for the session (names ``localhost``, ``127.0.0.1``, ``::1``);
- an OAuth 2.0 token server (standard library) that checks client
  credentials, issues a token, and serves ``GET /resource`` only to that token,
  ``GET /key-header`` and ``/key-query`` only with its API key, and ``GET
  /basic`` only with the client id and secret as Basic credentials;
- listeners that never answer (a full accept queue, or accepted and silent)
  and a closed port.

Each server is a child process stopped by its PID. The recipes are the functions below.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

HTTPBIN_SCRIPT = """
import ssl, sys
import werkzeug.http
# httpbin 0.10.0 predates Werkzeug 3: give it the function it imports, and undo the
# bytes it writes into Location headers (Werkzeug 3 would send "b'http://...'").
if not hasattr(werkzeug.http, "parse_authorization_header"):
    from werkzeug.datastructures import Authorization
    werkzeug.http.parse_authorization_header = Authorization.from_header
from httpbin import app as httpbin_app

def app(environ, start_response):
    def fixed(status, headers, exc_info=None):
        headers = [
            (k, v[2:-1] if k.lower() == "location" and v.startswith(("b'", 'b"')) else v) for k, v in headers
        ]
        return start_response(status, headers, exc_info)
    return httpbin_app(environ, fixed)
from werkzeug.serving import make_server
ctx = None
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ctx)
print(server.server_port, flush=True)
server.serve_forever()
"""

TOKEN_SCRIPT = """
import base64, json, os, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLIENT_ID, CLIENT_SECRET, TOKEN = os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"], os.environ["TOKEN"]
API_KEY = os.environ["API_KEY"]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        client = (form.get("client_id"), form.get("client_secret"))
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            client = (urllib.parse.unquote(user), urllib.parse.unquote(password))
        if self.path != "/token" or form.get("grant_type") != "client_credentials":
            return self.answer(400, {"error": "unsupported_grant_type"})
        if client != (CLIENT_ID, CLIENT_SECRET):
            return self.answer(401, {"error": "invalid_client"})
        self.answer(200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 60,
                          "scope": form.get("scope", "")})

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/key-header":
            granted = self.headers.get("X-Api-Key") == API_KEY
        elif path == "/key-query":
            granted = dict(urllib.parse.parse_qsl(query)).get("api_key") == API_KEY
        elif path == "/basic":
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            granted = self.headers.get("Authorization") == "Basic " + expected
        else:
            granted = self.headers.get("Authorization") == "Bearer " + TOKEN
        self.answer(200, {"ok": True}) if granted else self.answer(401, {"error": "invalid_token"})

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


@dataclass
class Peer:
    """A server process on 127.0.0.1."""

    proc: subprocess.Popen[str]
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        """The base URL by address."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """End exactly this process."""
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _start(script: str, *args: str, env: dict[str, str] | None = None, scheme: str = "http") -> Peer:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # server request logs carry query strings; nobody reads them
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the script prints its port once it listens
    if not line.strip().isdigit():
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"peer did not start (exit code {proc.poll()})")
    peer = Peer(proc, int(line), scheme)
    _wait_until_answers(peer.port)
    return peer


def _wait_until_answers(port: int, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class TlsFiles:
    """A trustme CA and a server certificate for localhost, 127.0.0.1 and ::1."""

    ca_pem: str
    cert: Path
    key: Path


def make_tls(directory: Path) -> TlsFiles:
    """Write a fresh CA and server certificate into ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    cert, key = directory / "server.pem", directory / "server.key"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return TlsFiles(ca.cert_pem.bytes().decode(), cert, key)


def start_httpbin(tls: TlsFiles | None = None) -> Peer:
    """httpbin over HTTP, or over HTTPS with the given certificate."""
    if tls is None:
        return _start(HTTPBIN_SCRIPT)
    return _start(HTTPBIN_SCRIPT, str(tls.cert), str(tls.key), scheme="https")


@dataclass
class TokenPeer(Peer):
    """The OAuth 2.0 token server and the credentials it accepts."""

    client_id: str = ""
    client_secret: str = ""
    token: str = ""
    api_key: str = ""


def start_token_server() -> TokenPeer:
    """A client-credentials token endpoint at ``/token``, a bearer-only ``/resource``, API-key routes."""
    creds = {
        "CLIENT_ID": "probe-client",
        "CLIENT_SECRET": "cs-" + secrets.token_hex(12),
        "TOKEN": "at-" + secrets.token_hex(16),
        "API_KEY": "ak-" + secrets.token_hex(12),
    }
    peer = _start(TOKEN_SCRIPT, env=creds)
    values = (creds["CLIENT_ID"], creds["CLIENT_SECRET"], creds["TOKEN"], creds["API_KEY"])
    return TokenPeer(peer.proc, peer.port, "http", *values)


def closed_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a new connect is never completed (SYNs dropped)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        fillers = []
        try:
            for _ in range(2):  # listen(0) queues one connection; a second makes sure
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            time.sleep(0.05)
            yield port
        finally:
            for filler in fillers:
                filler.close()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that completes the TCP handshake (kernel backlog) but never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])
