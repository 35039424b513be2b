"""Peers of the serverless probe tests: an HTTP function and Lambda functions on moto.

:class:`HttpFunction` is a standard-library server written for these tests (the
recipe below): ``GET /health`` answers ``{"status": "ok"}``,
``POST /invoke`` echoes the JSON it gets, ``GET /moved`` redirects to
``/health``, ``GET /broken/health`` answers 500; under ``/secure/`` both need the
bearer token or the API key. It records every request, so a test can prove the
default probe never sent a ``POST``.

:func:`create_function` makes an IAM role and a python3.11 zip function on a
moto server; moto runs no function code here (no docker), and the probe never
needs it to: ``Invoke`` with ``DryRun`` answers 204 without running it.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.types.peers_file import client
from tests.types.peers_vector import ServerProcess

FUNCTION_TOKEN = "fn-Bearer-5d1e8b"
FUNCTION_API_KEY = "fn-ApiKey-c09a44"
FUNCTION_NAME = "probe-target"
TRUST_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


class HttpFunction:
    """A local HTTP function: health route, echoing invoke route, optional auth."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fn = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fn.requests.append({"method": "GET", "path": self.path})
                if not fn.allowed(self.path, self.headers):
                    self._send(401, {"error": "unauthorized"})
                elif self.path.removeprefix("/secure") == "/health":
                    self._send(200, {"status": "ok"})
                elif self.path == "/broken/health":
                    self._send(500, {"error": "boom"})
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/health")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(404, {"error": "no such route"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                fn.requests.append({"method": "POST", "path": self.path, "body": body})
                if not fn.allowed(self.path, self.headers):
                    self._send(401, {"error": "unauthorized"})
                elif self.path.removeprefix("/secure") == "/invoke":
                    self._send(200, {"echo": body})
                else:
                    self._send(404, {"error": "no such route"})

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def allowed(path: str, headers: Any) -> bool:
        """Routes under ``/secure/`` need the bearer token or the API key."""
        if not path.startswith("/secure/"):
            return True
        return bool(
            headers.get("Authorization") == f"Bearer {FUNCTION_TOKEN}"
            or headers.get("X-API-Key") == FUNCTION_API_KEY
        )

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()


def create_function(server: ServerProcess) -> dict[str, Any]:
    """An IAM role and a python3.11 function on the moto server; its configuration."""
    iam = client(server, "iam")
    role = iam.create_role(RoleName="probe-role", AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("handler.py", "def handler(event, context):\n    return event\n")
    lam = client(server, "lambda")
    return dict(
        lam.create_function(
            FunctionName=FUNCTION_NAME,
            Runtime="python3.11",
            Role=role["Role"]["Arn"],
            Handler="handler.handler",
            Code={"ZipFile": archive.getvalue()},
            MemorySize=256,
        )
    )
