"""A secret sent to the API never comes back: not in any response, log line or audit record,
and not in the database in clear."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, Tenant, assert_problem

Names = Callable[[str], str]
C = "/api/v1/connectors"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers 401 and echoes every request header back, as careless servers do."""

    def _echo(self) -> None:
        echoed = "\n".join(f"{k}: {v}" for k, v in self.headers.items()).encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer error="{self.headers.get("Authorization", "")}"')
        self.send_header("Content-Length", str(len(echoed)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(echoed)

    do_GET = do_HEAD = do_POST = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    """A loopback HTTP server that answers 401 quoting the request's headers."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class _Recorder:
    """Every response (status, headers, body) seen through :meth:`call`."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.seen: list[str] = []

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)
        self.seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response


def _at_rest(server: Server) -> str:
    """Every byte the store holds, as text: the SQLite files, or PostgreSQL's rows."""
    if server.settings.database_url is None:
        data_dir = server.settings.data_dir
        files = [p for p in Path(data_dir).iterdir() if p.name.startswith("connectord.db")]
        return "".join(p.read_bytes().decode("latin-1") for p in files)
    import asyncpg

    async def dump() -> str:
        assert server.settings.database_url is not None
        conn = await asyncpg.connect(server.settings.database_url.get_secret_value())
        try:
            tables = ["connectors", "connector_secrets", "test_results", "audit_events", "idempotency_keys"]
            return "".join([str(await conn.fetch(f"SELECT * FROM {t}")) for t in tables])
        finally:
            await conn.close()

    return asyncio.run(dump())


def test_secrets_never_come_back(
    server: Server, api_tenant: Tenant, unique: Names, closed_port: int, echo_url: str
) -> None:
    url_secret, config_secret, header_secret, token_secret, new_secret = (
        f"s3cr3t-{secrets.token_hex(8)}" for _ in range(5)
    )
    every = [url_secret, config_secret, header_secret, token_secret, new_secret]
    api = _Recorder(api_tenant.http)

    in_url = api.call(
        "POST",
        C,
        json={
            "name": unique("url"),
            "connector_type": "custom",
            # Percent-encoded in the URL: both spellings of the password contain url_secret.
            "endpoint": f"tcp://u:{url_secret}%21@127.0.0.1:1",
        },
        headers={"Idempotency-Key": unique("idem")},
    ).json()
    assert in_url["secret_fields"] == ["password"]
    assert in_url["endpoint"] == "tcp://u@127.0.0.1:1"
    in_config = api.call(
        "POST",
        C,
        json={
            "name": unique("cfg"),
            "connector_type": "custom",
            "endpoint": f"127.0.0.1:{closed_port}",
            "config": {"password": config_secret},
        },
    ).json()
    in_http = api.call(
        "POST",
        C,
        json={
            "name": unique("http"),
            "connector_type": "http",
            "endpoint": echo_url,
            "config": {
                "secret_headers": {"X-Api-Key": header_secret},
                "auth": {"kind": "bearer", "token": token_secret},
            },
        },
    ).json()
    assert sorted(in_http["secret_fields"]) == ["auth.token", "secret_headers.X-Api-Key"]

    for connector in (in_url, in_config, in_http):
        cid = connector["id"]
        api.call("GET", f"{C}/{cid}")
        api.call("POST", f"{C}/{cid}/test")
        kept = api.call("PUT", f"{C}/{cid}", json={"metadata": {"touched": True}}).json()
        assert kept["secret_fields"] == connector["secret_fields"]  # omitted: kept
        api.call("POST", f"{C}/{cid}/test")
        api.call("GET", f"{C}/{cid}/history")

    http_result = api.http.get(f"{C}/{in_http['id']}/history").json()["items"][0]
    assert http_result["success"] is False  # the echo server refused it
    replaced = api.call("PUT", f"{C}/{in_config['id']}", json={"config": {"password": new_secret}}).json()
    assert replaced["secret_fields"] == ["password"]
    removed = api.call("PUT", f"{C}/{in_url['id']}", json={"config": {"password": None}}).json()
    assert removed["secret_fields"] == []

    unsaved = {
        "name": unique("u"),
        "connector_type": "custom",
        "endpoint": f"tcp://u:{url_secret}@127.0.0.1:1",
    }
    api.call("POST", f"{C}/test", json=unsaved)
    api.call("POST", f"{C}/test", json={**unsaved, "endpoint": echo_url, "connector_type": "http"})
    refused = api.call(
        "POST", C, json={**unsaved, "config": {"password": config_secret, "capabilities": ["fly"]}}
    )
    assert_problem(refused, 422)
    assert_problem(api.call("POST", C, json={**unsaved, "config": {"password": {"x": config_secret}}}), 422)
    assert_problem(api.call("POST", C, json={**unsaved, "colour": config_secret}), 422)
    truncated = f'{{"name": "x", "connector_type": "custom", "config": {{"password": "{config_secret}"'
    malformed = api.call("POST", C, content=truncated, headers={"Content-Type": "application/json"})
    assert_problem(malformed, 422)
    api.call("GET", C)
    api.call("GET", "/api/v1/audit", params={"limit": 1000})
    api.call("DELETE", f"{C}/{in_http['id']}")
    audit = api.call("GET", "/api/v1/audit", params={"limit": 1000}).json()["items"]
    assert {"connector.create", "connector.update", "connector.test", "connector.delete"} <= {
        e["action"] for e in audit
    }

    seen = "\n".join(api.seen)
    assert server.wait_for_log(api_tenant.http.get(C).headers["x-request-id"])
    log = server.log_text()
    stored = _at_rest(server)
    # Positive controls: what is searched does hold these connectors.
    for haystack in (seen, stored):
        assert in_config["name"] in haystack
    assert in_http["id"] in log  # the access log names the paths
    for secret in every:
        assert secret not in seen, "a secret came back in a response"
        assert secret not in log, "a secret is in the server log"
        assert secret not in stored, "a secret is stored in clear"
