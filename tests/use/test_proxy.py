"""The credential-injecting HTTP proxy (``/api/v1/connectors/{id}/proxy/{path}``) against a
real ``connectord serve`` (SQLite) and a real aiohttp upstream on loopback.

The server's egress allow list opens 127.0.0.1/32 and ::1 only: a connector on 127.0.0.2
(loopback too, so no packet leaves the machine) stands for a destination the policy
denies. Its proxy bounds are small (a 100 kB body, a 64 KiB answer) so the tests can
cross them. The upstream records what it was sent (server side) and never puts a
request's credentials in its bodies; the one header that echoes them checks that the
proxy drops it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from connectord.client import Client, error_from_response
from connectord.errors import MethodNotAllowedError, ProxyError
from connectord.facade import ConnectorsFacade
from connectord.model import InUse
from connectord.settings import Settings
from connectord.use.cache import UseCache
from tests.api.conftest import (
    Server,
    Tenant,
    assert_problem,
    create_key,
    create_tenant,
    free_port,
    run_server,
)
from tests.oauth_server import AppThread, wait_until
from tests.types.peers_http import TlsFiles, make_tls

MAX_BODY = 100_000  # above the API's own 64 KiB bound (CONNECTORD_MAX_BODY_BYTES)
MAX_ANSWER = 65536
RATE = 30  # proxied requests per key per minute (burst 30)
SECRETS: list[str] = []


def secret(prefix: str) -> str:
    """A fresh secret value, remembered for the leak checks at the end of the module."""
    value = f"{prefix}-{secrets.token_hex(10)}"
    SECRETS.append(value)
    return value


@dataclass
class Upstream:
    """The loopback upstream and what it received."""

    thread: AppThread
    seen: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "") -> str:
        """An endpoint on the upstream."""
        return self.thread.url(path)

    def last(self) -> dict[str, Any]:
        """The last request it received."""
        return self.seen[-1]


def _upstream_app(seen: list[dict[str, Any]]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "path_qs": request.raw_path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        headers = {
            # Hop-by-hop headers (the ones Connection names too) and a cookie never come back.
            "Connection": "keep-alive, X-Hop-Token",
            "X-Hop-Token": "hop",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic",
            "Set-Cookie": "session=upstream-session",
            "X-Upstream": "yes",
            # A careless upstream echoing the credential: the proxy must drop the header.
            "X-Echo-Authorization": request.headers.get("Authorization", "none"),
        }
        return web.json_response({"seen": len(seen), "method": request.method}, headers=headers)

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(
            status=code, text=f"upstream says {code}", headers={"X-Upstream-Status": str(code)}
        )

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["size"]))

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse it early
        await response.prepare(request)
        for _ in range(int(request.match_info["chunks"])):
            await response.write(b"y" * 16384)
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    app = web.Application()
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big/{size}", big)
    app.router.add_get("/stream/{chunks}", stream)
    app.router.add_get("/redirect", redirect)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The upstream, on 127.0.0.1."""
    seen: list[dict[str, Any]] = []
    thread = AppThread(_upstream_app(seen)).start()
    yield Upstream(thread, seen)
    thread.stop()


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, TlsFiles]]:
    """The same upstream over HTTPS, its certificate for localhost and 127.0.0.1 (a test CA)."""
    files = make_tls(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    seen: list[dict[str, Any]] = []
    thread = AppThread(_upstream_app(seen), context).start()
    yield Upstream(thread, seen), files
    thread.stop()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on SQLite, 127.0.0.1 and ::1 (only) opened, small proxy bounds."""
    env = {
        "CONNECTORD_EGRESS_ALLOW": "127.0.0.1/32,::1/128",
        "CONNECTORD_PROXY_MAX_BODY": str(MAX_BODY),
        "CONNECTORD_PROXY_MAX_ANSWER": str(MAX_ANSWER),
        "CONNECTORD_PROXY_RATE": str(RATE),
    }
    with run_server("sqlite", tmp_path_factory.mktemp("proxy"), request, **env) as running:
        yield running
        _assert_no_secret_leaked(running)


def _assert_no_secret_leaked(server: Server) -> None:
    """No secret any test of the module used is in the server's log or its metrics."""
    log = server.log_text()
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    for value in SECRETS:
        for variant in {value, base64.b64encode(value.encode()).decode()}:
            assert variant not in log, "a secret reached the server log"
            assert variant not in metrics, "a secret reached /metrics"


@dataclass
class Setup:
    """A tenant, a ``connectors:use`` key and an HTTP client that sends it (no checks)."""

    tenant: Tenant
    key: str
    http: httpx.Client

    def register(self, name: str, endpoint: str, **config: Any) -> dict[str, Any]:
        """Register an ``http`` connector through the REST API."""
        body = {"name": name, "connector_type": "http", "endpoint": endpoint, "config": config}
        response = self.tenant.http.post("/api/v1/connectors", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def setup(server: Server) -> Iterator[Setup]:
    """A fresh tenant and a fresh key (so the per-key rate limit is the test's own)."""
    tenant = create_tenant(server, "px")
    key = create_key(server, tenant, ["connectors:use"])
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        yield Setup(tenant, key, http)


def proxy_path(connector: dict[str, Any], rest: str = "") -> str:
    """The proxy's path for a connector."""
    return f"/api/v1/connectors/{connector['id']}/proxy{rest}"


def assert_clean(response: httpx.Response, *values: str) -> None:
    """None of the values (nor their Basic encodings) in the answer's headers or body."""
    text = response.text + json.dumps(list(response.headers.multi_items()))
    for value in values:
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text


# --- each auth kind is added, and never answered ------------------------------------


def test_bearer_token_is_added_and_not_answered(setup: Setup, upstream: Upstream) -> None:
    token = secret("bearer")
    connector = setup.register("bearer", upstream.url("/echo/base"), auth={"kind": "bearer", "token": token})
    response = setup.http.get(proxy_path(connector, "/items/7"), params={"q": "a b"})
    assert response.status_code == 200, response.text
    seen = upstream.last()
    assert seen["headers"]["Authorization"] == f"Bearer {token}"
    assert seen["path_qs"] == "/echo/base/items/7?q=a+b"
    assert response.headers["x-upstream"] == "yes"
    assert "x-echo-authorization" not in response.headers
    assert_clean(response, token)


def test_basic_auth_is_added(setup: Setup, upstream: Upstream) -> None:
    password = secret("basic")
    connector = setup.register(
        "basic", upstream.url("/echo"), auth={"kind": "basic", "username": "svc", "password": password}
    )
    response = setup.http.get(proxy_path(connector, "/x"))
    assert response.status_code == 200, response.text
    expected = base64.b64encode(f"svc:{password}".encode()).decode()
    assert upstream.last()["headers"]["Authorization"] == f"Basic {expected}"
    assert_clean(response, password)


def test_api_key_header_is_added(setup: Setup, upstream: Upstream) -> None:
    key = secret("hdrkey")
    connector = setup.register(
        "apikey-h", upstream.url("/echo"), auth={"kind": "api_key", "name": "X-Api-Key", "value": key}
    )
    response = setup.http.get(proxy_path(connector, "/x"), headers={"X-Api-Key": "the-callers-own"})
    assert response.status_code == 200, response.text
    assert upstream.last()["headers"]["X-Api-Key"] == key
    assert_clean(response, key)


def test_api_key_query_is_added(setup: Setup, upstream: Upstream) -> None:
    key = secret("qkey")
    connector = setup.register(
        "apikey-q",
        upstream.url("/echo?fixed=1"),
        auth={"kind": "api_key", "name": "api_key", "value": key, "in": "query"},
    )
    # A caller's own api_key parameter cannot replace the connector's.
    response = setup.http.get(proxy_path(connector, "/x"), params={"page": "2", "api_key": "forged"})
    assert response.status_code == 200, response.text
    assert upstream.last()["query"] == {"fixed": "1", "page": "2", "api_key": key}
    assert_clean(response, key)


def test_secret_headers_are_added_caller_credentials_are_not(setup: Setup, upstream: Upstream) -> None:
    value = secret("sechdr")
    connector = setup.register("sechdr", upstream.url("/echo"), headers={"X-Service-Token": value})
    response = setup.http.get(
        proxy_path(connector),
        headers={"Cookie": "mine=1", "X-Forwarded-For": "10.0.0.1", "Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    headers = upstream.last()["headers"]
    assert headers["X-Service-Token"] == value
    # The caller's connectord key, its cookies and unlisted headers stay at the proxy.
    assert "Cookie" not in headers
    assert "X-Forwarded-For" not in headers
    assert setup.key not in json.dumps(headers)
    assert headers["Accept"] == "application/json"
    assert_clean(response, value)


def test_hop_by_hop_and_cookies_are_dropped(setup: Setup, upstream: Upstream) -> None:
    direct = httpx.get(upstream.url("/echo"))
    assert {"x-hop-token", "keep-alive", "proxy-authenticate", "set-cookie"} <= set(direct.headers)
    connector = setup.register("hops", upstream.url("/echo"))
    response = setup.http.get(
        proxy_path(connector), headers={"Connection": "keep-alive, X-Drop", "X-Drop": "1", "TE": "trailers"}
    )
    assert response.status_code == 200
    assert response.headers["x-echo-authorization"] == "none"  # a header without a secret passes
    for name in ("x-hop-token", "keep-alive", "proxy-authenticate", "set-cookie"):
        assert name not in response.headers, name
    assert "upstream-session" not in json.dumps(list(response.headers.multi_items()))
    sent = {k.lower() for k in upstream.last()["headers"]}
    assert "x-drop" not in sent
    assert "te" not in sent


# --- scope, reach, status ------------------------------------------------------------


def test_key_without_use_scope_is_403(setup: Setup, upstream: Upstream, server: Server) -> None:
    connector = setup.register("noscope", upstream.url("/echo"))
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {setup.tenant.key}"}) as h:
        assert_problem(h.get(proxy_path(connector)), 403, "forbidden")
    before = len(upstream.seen)
    assert_problem(setup.http.get("/api/v1/connectors/nope/proxy/x"), 404, "not-found")
    assert len(upstream.seen) == before


def test_a_bad_key_is_refused_before_a_bad_id(setup: Setup, server: Server) -> None:
    # The lean route checks as FastAPI's solving did: the key (401), then the id (422).
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert_problem(anonymous.get("/api/v1/connectors/%00/proxy/x"), 401)
        assert_problem(anonymous.get("/api/v1/connectors/nope/proxy"), 401)
    invalid = setup.http.get("/api/v1/connectors/%00/proxy/x")
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["loc"] == ["path", "connector_id"]
    assert_problem(setup.http.get("/api/v1/connectors/nope/proxy"), 404, "not-found")


def test_another_tenants_connector_is_404(setup: Setup, upstream: Upstream, server: Server) -> None:
    connector = setup.register("mine", upstream.url("/echo"))
    other = create_tenant(server, "other")
    other_key = create_key(server, other, ["connectors:use"])
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {other_key}"}) as h:
        assert_problem(h.get(proxy_path(connector, "/x")), 404, "not-found")


def test_only_http_connectors_are_proxied(setup: Setup) -> None:
    body = {"name": "db", "connector_type": "sql", "endpoint": "postgresql://127.0.0.1:5432/test"}
    made = setup.tenant.http.post("/api/v1/connectors", json=body)
    assert made.status_code == 201, made.text
    assert_problem(setup.http.get(proxy_path(made.json())), 409, "not-proxyable")


def test_paused_connector_is_refused(setup: Setup, upstream: Upstream) -> None:
    connector = setup.register("paused", upstream.url("/echo"))
    paused = setup.tenant.http.put(f"/api/v1/connectors/{connector['id']}", json={"status": "disconnected"})
    assert paused.status_code == 200, paused.text
    assert_problem(setup.http.get(proxy_path(connector)), 409)


# --- methods and bodies --------------------------------------------------------------


def test_post_refused_unless_the_connector_allows_it(setup: Setup, upstream: Upstream) -> None:
    closed = setup.register("ro", upstream.url("/echo"))
    before = len(upstream.seen)
    refused = setup.http.post(proxy_path(closed, "/x"), json={"a": 1})
    body = assert_problem(refused, 405, "method-not-allowed")
    assert refused.headers["allow"] == "GET, HEAD"
    assert "proxy_methods" in body["detail"]
    assert len(upstream.seen) == before
    assert setup.http.head(proxy_path(closed, "/x")).status_code == 200

    opened = setup.register("rw", upstream.url("/echo"), proxy_methods=["POST", "DELETE"])
    sent = setup.http.post(
        proxy_path(opened, "/x"), content=b'{"a": 1}', headers={"Content-Type": "application/json"}
    )
    assert sent.status_code == 200, sent.text
    assert upstream.last()["method"] == "POST"
    assert upstream.last()["body"] == b'{"a": 1}'
    assert upstream.last()["headers"]["Content-Type"] == "application/json"
    assert_problem(setup.http.put(proxy_path(opened, "/x"), content=b"x"), 405)


def test_request_body_over_the_bound_is_413(setup: Setup, upstream: Upstream) -> None:
    connector = setup.register("body", upstream.url("/echo"), proxy_methods=["POST"])
    before = len(upstream.seen)
    assert_problem(setup.http.post(proxy_path(connector), content=b"z" * (MAX_BODY + 1)), 413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the bound is counted as it streams
        for _ in range(101):
            yield b"z" * 1000

    assert_problem(setup.http.post(proxy_path(connector), content=chunked()), 413)
    assert len(upstream.seen) == before
    # At the bound exactly, it goes through (the proxy's bound, not the API's 64 KiB).
    assert setup.http.post(proxy_path(connector), content=b"z" * MAX_BODY).status_code == 200
    assert len(upstream.last()["body"]) == MAX_BODY


def test_answer_over_the_bound_is_502_or_cut(setup: Setup, upstream: Upstream) -> None:
    connector = setup.register("big", upstream.url(""))
    assert setup.http.get(proxy_path(connector, f"/big/{MAX_ANSWER}")).content == b"x" * MAX_ANSWER
    body = assert_problem(
        setup.http.get(proxy_path(connector, f"/big/{MAX_ANSWER + 1}")), 502, "proxy-failed"
    )
    assert body["error_kind"] == "protocol"
    # Without a Content-Length the answer has begun: it is cut, never passed whole.
    with pytest.raises(httpx.RemoteProtocolError):
        setup.http.get(proxy_path(connector, "/stream/8"))


# --- what the proxy keeps per connector is made again as soon as the connector changes -


def test_an_updated_connector_is_used_as_updated_on_the_next_request(
    setup: Setup, upstream: Upstream
) -> None:
    old, new = secret("before"), secret("after")
    connector = setup.register("changing", upstream.url("/echo/v1"), auth={"kind": "bearer", "token": old})
    path = f"/api/v1/connectors/{connector['id']}"
    assert setup.http.get(proxy_path(connector, "/x")).status_code == 200
    assert upstream.last()["headers"]["Authorization"] == f"Bearer {old}"
    # A new secret, then new headers and endpoint: each is on the very next request.
    changed = setup.tenant.http.put(path, json={"config": {"auth": {"kind": "bearer", "token": new}}})
    assert changed.status_code == 200, changed.text
    assert setup.http.get(proxy_path(connector, "/x")).status_code == 200
    assert upstream.last()["headers"]["Authorization"] == f"Bearer {new}"
    moved = setup.tenant.http.put(
        path, json={"endpoint": upstream.url("/echo/v2"), "config": {"headers": {"X-Team": "blue"}}}
    )
    assert moved.status_code == 200, moved.text
    assert setup.http.get(proxy_path(connector, "/x")).status_code == 200
    assert upstream.last()["path_qs"] == "/echo/v2/x"
    assert upstream.last()["headers"]["X-Team"] == "blue"
    # Status and existence are read on every request too.
    paused = setup.tenant.http.put(path, json={"status": "disconnected"})
    assert paused.status_code == 200, paused.text
    assert_problem(setup.http.get(proxy_path(connector, "/x")), 409)
    assert setup.tenant.http.delete(path).status_code == 204
    assert_problem(setup.http.get(proxy_path(connector, "/x")), 404, "not-found")


def _counting_cache() -> tuple[UseCache[str], list[str]]:
    """A cache whose value is the connector's token, and the tokens it derived."""
    made: list[str] = []

    def derive(use: InUse) -> str:
        made.append(use.config["auth"]["token"])
        return made[-1]

    return UseCache(derive), made


async def test_a_secret_resealed_without_a_new_version_is_read_again(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    async with ConnectorsFacade(settings=settings) as facade:
        config = {"auth": {"kind": "bearer", "token": "first-token"}}
        info = await facade.register_connector("t1", "api", "http", "http://127.0.0.1:9/", config)
        cache, made = _counting_cache()
        for _ in range(3):
            _, token = await facade.use_connector_cached(info.id, "t1", cache, purpose="proxy")
            assert token == "first-token"
        assert made == ["first-token"]  # made once, then kept
        # As a key rotation or a rotated refresh token does: the sealed secret alone changes.
        old = await facade.store.get_secret("t1", info.id)
        assert old is not None
        new = facade.keyring.seal_tree({"auth": {"token": "second-token"}}, "t1", info.id)
        assert await facade.store.replace_secret("t1", info.id, old, new)
        _, token = await facade.use_connector_cached(info.id, "t1", cache, purpose="proxy")
        assert (token, made) == ("second-token", ["first-token", "second-token"])


async def test_secret_references_are_kept_no_longer_than_their_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CD_PROXY_TOKEN", "env-one")
    settings = Settings(data_dir=tmp_path / "data", secret_ref_env=["CD_PROXY_*"], secret_ref_ttl=0)
    async with ConnectorsFacade(settings=settings) as facade:
        config = {"auth": {"kind": "bearer", "token": "env:CD_PROXY_TOKEN"}}
        info = await facade.register_connector("t1", "api", "http", "http://127.0.0.1:9/", config)
        cache, made = _counting_cache()
        _, token = await facade.use_connector_cached(info.id, "t1", cache, purpose="proxy")
        assert token == "env-one"
        monkeypatch.setenv("CD_PROXY_TOKEN", "env-two")
        _, token = await facade.use_connector_cached(info.id, "t1", cache, purpose="proxy")
        assert (token, made) == ("env-two", ["env-one", "env-two"])


# --- upstream answers pass through; the proxy's own failures are problems ------------


@pytest.mark.parametrize("code", [400, 404, 409, 500, 503])
def test_upstream_errors_pass_through(setup: Setup, upstream: Upstream, code: int) -> None:
    connector = setup.register(f"status{code}", upstream.url(""))
    response = setup.http.get(proxy_path(connector, f"/status/{code}"))
    assert response.status_code == code
    assert response.text == f"upstream says {code}"
    assert response.headers["x-upstream-status"] == str(code)
    assert response.headers["content-type"].startswith("text/plain")


def test_egress_denied_is_a_502_problem(setup: Setup, upstream: Upstream) -> None:
    # 127.0.0.2 is loopback outside the server's allow list (127.0.0.1/32): never connected to.
    connector = setup.register("denied", f"http://127.0.0.2:{upstream.thread.port}/echo")
    body = assert_problem(setup.http.get(proxy_path(connector, "/x")), 502, "proxy-failed")
    assert body["error_kind"] == "egress_denied"
    assert "egress" in body["detail"]


def test_redirect_to_a_denied_address_is_refused(setup: Setup, upstream: Upstream) -> None:
    connector = setup.register("redir", upstream.url(""))
    for target in (
        "http://169.254.169.254/latest/meta-data/",
        f"http://127.0.0.2:{upstream.thread.port}/echo",
    ):
        response = setup.http.get(proxy_path(connector, "/redirect"), params={"to": target})
        body = assert_problem(response, 502, "proxy-failed")
        assert body["error_kind"] == "egress_denied"
    # One within the connector's origin and path comes back rewritten to the proxy's URL.
    same = setup.http.get(proxy_path(connector, "/redirect"), params={"to": "/echo/next?a=1"})
    assert same.status_code == 302
    assert same.headers["location"] == proxy_path(connector, "/echo/next?a=1")


def test_upstream_timeout_is_a_504_problem(setup: Setup, upstream: Upstream) -> None:
    connector = setup.register("slow", upstream.url(""), timeout=1)
    body = assert_problem(setup.http.get(proxy_path(connector, "/slow")), 504, "proxy-failed")
    assert body["error_kind"] == "timeout"


def test_refused_connection_is_a_502_problem(setup: Setup) -> None:
    connector = setup.register("closed", f"http://127.0.0.1:{free_port()}/")
    body = assert_problem(setup.http.get(proxy_path(connector)), 502, "proxy-failed")
    assert body["error_kind"] == "refused"


def test_https_upstream_by_name(setup: Setup, tls_upstream: tuple[Upstream, TlsFiles]) -> None:
    upstream, files = tls_upstream
    port = upstream.thread.port
    token = secret("tls")
    trusted = setup.register(
        "tls",
        f"https://localhost:{port}/echo",
        ca_pem=files.ca_pem,
        auth={"kind": "bearer", "token": token},
    )
    response = setup.http.get(proxy_path(trusted, "/x"))
    assert response.status_code == 200, response.text
    # Sent to the checked address, with the name kept for Host, SNI and the certificate check.
    assert upstream.last()["headers"]["Host"] == f"localhost:{port}"
    assert upstream.last()["headers"]["Authorization"] == f"Bearer {token}"
    untrusted = setup.register("tls-untrusted", f"https://localhost:{port}/echo")
    body = assert_problem(setup.http.get(proxy_path(untrusted, "/x")), 502, "proxy-failed")
    assert body["error_kind"] == "tls"


def test_ipv6_upstream(setup: Setup) -> None:
    seen: list[dict[str, Any]] = []
    thread = AppThread(_upstream_app(seen), host="::1").start()
    try:
        connector = setup.register("v6", thread.url("/echo"))
        response = setup.http.get(proxy_path(connector, "/x"), params={"a": "1"})
        assert response.status_code == 200, response.text
        assert seen[-1]["path_qs"] == "/echo/x?a=1"
        assert seen[-1]["headers"]["Host"] == f"[::1]:{thread.port}"
    finally:
        thread.stop()


def test_path_cannot_climb_above_the_endpoint(setup: Setup, upstream: Upstream) -> None:
    connector = setup.register("jail", upstream.url("/echo/base"))
    before = len(upstream.seen)
    assert_problem(setup.http.get(proxy_path(connector, "/%2e%2e/secret")), 422)
    assert len(upstream.seen) == before


def test_rate_limit_per_key(setup: Setup, upstream: Upstream, server: Server) -> None:
    connector = setup.register("rated", upstream.url("/echo"))
    statuses = [setup.http.get(proxy_path(connector)).status_code for _ in range(RATE)]
    assert statuses == [200] * RATE
    limited = setup.http.get(proxy_path(connector))
    body = assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert body["retry_after"] > 0
    # Another key of the same tenant has its own budget.
    other = create_key(server, setup.tenant, ["connectors:use"])
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {other}"}) as h:
        assert h.get(proxy_path(connector)).status_code == 200


def test_last_used_at_and_metrics(setup: Setup, upstream: Upstream, server: Server) -> None:
    connector = setup.register("used", upstream.url("/echo"))
    assert connector["last_used_at"] is None
    assert setup.http.get(proxy_path(connector)).status_code == 200
    # Marks are coalesced into one write a second.
    wait_until(
        lambda: setup.tenant.http.get(f"/api/v1/connectors/{connector['id']}").json()["last_used_at"],
        10,
        "last_used_at",
    )
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'connectord_proxy_requests_total{connector_type="http",error_kind="",status="200"}' in metrics


# --- the SDK -------------------------------------------------------------------------


def test_sdk_proxy_client(setup: Setup, upstream: Upstream, server: Server) -> None:
    token = secret("sdk")
    connector = setup.register("sdk", upstream.url("/echo/api"), auth={"kind": "bearer", "token": token})
    with Client(server.base_url, setup.key) as client, client.proxy(connector["id"]) as http:
        assert isinstance(http, httpx.Client)
        response = http.get("v1/items", params={"x": "1"})
        assert response.status_code == 200, response.text
        assert upstream.last()["path_qs"] == "/echo/api/v1/items?x=1"
        assert upstream.last()["headers"]["Authorization"] == f"Bearer {token}"
        refused = http.post("v1/items", json={})
        assert refused.status_code == 405
        assert isinstance(error_from_response(refused), MethodNotAllowedError)
    denied = setup.register("sdk-denied", f"http://127.0.0.2:{upstream.thread.port}/")
    with Client(server.base_url, setup.key) as client, client.proxy(denied["id"]) as http:
        error = error_from_response(http.get(""))
        assert isinstance(error, ProxyError)
        assert error.kind.value == "egress_denied"


async def test_sdk_async_proxy_client(setup: Setup, upstream: Upstream, server: Server) -> None:
    from connectord.client import AsyncClient

    connector = setup.register("sdk-async", upstream.url("/echo"))
    async with AsyncClient(server.base_url, setup.key) as client, client.proxy(connector["id"]) as http:
        assert isinstance(http, httpx.AsyncClient)
        answers = await asyncio.gather(*(http.get(f"n/{i}") for i in range(5)))
        assert [a.status_code for a in answers] == [200] * 5


def test_audit_records_no_secret(setup: Setup, upstream: Upstream) -> None:
    token = secret("audit")
    connector = setup.register("audited", upstream.url("/echo"), auth={"kind": "bearer", "token": token})
    assert setup.http.get(proxy_path(connector)).status_code == 200
    events = setup.tenant.http.get("/api/v1/audit").text
    for value in SECRETS:
        assert value not in events
