"""The MCP gateway (``/api/v1/mcp``), driven by the official MCP client against a real
``connectord serve`` (SQLite) and real MCP servers on loopback.

Peers (``tests/types/peers_mcp.py``, each a subprocess): ``gw-full`` with no
authentication; ``gw-secure`` behind a middleware that answers 401 unless
``Authorization: Bearer TOKEN`` is sent, with a tool that echoes that token back;
``gw-oauth``, which takes only the access tokens of the tests' OAuth token server
(``tests/oauth_server.py``, in this process); others started by the tests that need
them (one stopped mid-test, one refusing its listing), and a port that accepts
connections and never answers. Connectors are registered through the REST API; the
gateway key has the ``connectors:use`` scope only. The naming rules are unit-tested
at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from connectord.model import ConnectorInfo
from connectord.use.gateway import LIST_CONCURRENCY, LIST_TIMEOUT
from connectord.use.gateway_names import (
    NAME_MAX,
    PREFIX_MAX,
    assign_prefixes,
    exposed_name,
    exposed_uri,
    split_uri,
)
from tests.api.conftest import (
    Server,
    Tenant,
    assert_problem,
    create_key,
    create_tenant,
    free_port,
    run_server,
)
from tests.oauth_server import TokenServer
from tests.types import peers_mcp

TOKEN = "gw-tok-" + secrets.token_hex(12)
#: What MCP clients and LLM APIs accept as a tool name.
MCP_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_agent.py"


@pytest.fixture(scope="module")
def full_peer() -> Iterator[peers_mcp.McpPeer]:
    """The server without authentication."""
    peer = peers_mcp.start("gateway", free_port(), "/mcp", {"MCP_TEST_NAME": "gw-full"})
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def secure_peer() -> Iterator[peers_mcp.McpPeer]:
    """The server that requires ``Authorization: Bearer TOKEN``."""
    peer = peers_mcp.start(
        "gateway", free_port(), "/mcp", {"MCP_TEST_NAME": "gw-secure", "MCP_TEST_TOKEN": TOKEN}
    )
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on SQLite, loopback opened by its egress allow list."""
    with run_server("sqlite", tmp_path_factory.mktemp("gateway"), request) as running:
        yield running


@dataclass
class Setup:
    """A tenant with the two servers registered, and a gateway key."""

    tenant: Tenant
    key: str
    full: dict[str, Any]
    secure: dict[str, Any]


def register(
    tenant: Tenant, name: str, endpoint: str, metadata: dict[str, str] | None = None, **config: Any
) -> dict[str, Any]:
    """Register an mcp connector through the REST API."""
    body = {
        "name": name,
        "connector_type": "mcp",
        "endpoint": endpoint,
        "config": config,
        "metadata": metadata or {},
    }
    response = tenant.http.post("/api/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def setup(server: Server, full_peer: peers_mcp.McpPeer, secure_peer: peers_mcp.McpPeer) -> Setup:
    """A fresh tenant: ``full`` and ``secure`` registered, a ``connectors:use`` key."""
    tenant = create_tenant(server, "gw")
    full = register(tenant, "full", full_peer.url)
    secure = register(tenant, "secure", secure_peer.url, bearer_token=TOKEN)
    return Setup(tenant, create_key(server, tenant, ["connectors:use"]), full, secure)


@contextlib.asynccontextmanager
async def gateway(server: Server, key: str) -> AsyncIterator[Client]:
    """The official MCP client on the gateway, authenticated with ``key``."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    async with (
        http,
        Client(streamable_http_client(f"{server.base_url}/api/v1/mcp", http_client=http)) as client,
    ):
        yield client


def setup_url(setup: Setup, which: str) -> str:
    """The endpoint of one of the setup's connectors."""
    endpoint: str = (setup.full if which == "full" else setup.secure)["endpoint"]
    return endpoint


def text_of(result: Any) -> str:
    """The text of a tool result's content."""
    return " ".join(c.text for c in result.content if c.type == "text")


async def tool_names(server: Server, key: str) -> set[str]:
    async with gateway(server, key) as client:
        return {t.name for t in (await client.list_tools()).tools}


# --- tools ------------------------------------------------------------------------------


async def test_the_tools_of_two_servers_are_listed_under_their_connectors(
    server: Server, setup: Setup, full_peer: peers_mcp.McpPeer
) -> None:
    async with gateway(server, setup.key) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    async with Client(full_peer.url) as direct:
        upstream = {t.name: t for t in (await direct.list_tools()).tools}
    for prefix in ("full", "secure"):
        assert {f"{prefix}__whoami", f"{prefix}__add"} <= set(tools)
    assert "secure__leak" in tools
    assert "full__leak" not in tools  # only the secure server has it
    assert all(MCP_NAME.match(name) for name in tools), sorted(tools)
    # Descriptions and input schemas pass through unchanged.
    assert tools["full__add"].description == upstream["add"].description
    assert tools["full__add"].input_schema == upstream["add"].input_schema


async def test_a_call_reaches_the_right_server_with_its_bearer_token(server: Server, setup: Setup) -> None:
    async with gateway(server, setup.key) as client:
        secure = await client.call_tool("secure__whoami", {})
        full = await client.call_tool("full__whoami", {})
        added = await client.call_tool("full__add", {"a": 2, "b": 40})
    # gw-secure answers only with the bearer token (its middleware answers 401 otherwise).
    assert (secure.is_error, text_of(secure)) == (False, "gw-secure")
    assert (full.is_error, text_of(full)) == (False, "gw-full")
    assert text_of(added) == "42"


async def test_a_wrong_token_is_a_tool_error_of_kind_auth(
    server: Server, setup: Setup, secure_peer: peers_mcp.McpPeer
) -> None:
    register(setup.tenant, "wrong", secure_peer.url, bearer_token="not-" + TOKEN)
    async with gateway(server, setup.key) as client:
        result = await client.call_tool("wrong__whoami", {})
    assert result.is_error
    assert "connector 'wrong' is unavailable (auth)" in text_of(result)


async def test_a_stopped_server_is_a_tool_error_while_the_others_work(server: Server, setup: Setup) -> None:
    flaky = peers_mcp.start("gateway", free_port(), "/mcp", {"MCP_TEST_NAME": "gw-flaky"})
    try:
        register(setup.tenant, "flaky", flaky.url)
        async with gateway(server, setup.key) as client:
            assert text_of(await client.call_tool("flaky__whoami", {})) == "gw-flaky"
            flaky.stop()
            down = await client.call_tool("flaky__whoami", {})
            up = await client.call_tool("full__whoami", {})
    finally:
        flaky.stop()
    assert down.is_error
    assert "connector 'flaky' is unavailable (refused)" in text_of(down)
    assert (up.is_error, text_of(up)) == (False, "gw-full")


async def test_a_server_that_is_down_is_left_out_of_the_listing(server: Server, setup: Setup) -> None:
    register(setup.tenant, "down", f"http://127.0.0.1:{free_port()}/mcp")
    names = await tool_names(server, setup.key)
    assert "full__whoami" in names
    assert "secure__whoami" in names
    assert not [n for n in names if n.startswith("down__")]
    lines = server.wait_for_log("the gateway left out connector")
    assert any("(down): refused" in line for line in lines), lines


async def test_a_server_the_egress_policy_denies_is_never_reached(server: Server, setup: Setup) -> None:
    # The server's allow list opens 127.0.0.0/8 only: ::1 stays denied (nothing listens there).
    register(setup.tenant, "denied", f"http://[::1]:{free_port()}/mcp")
    async with gateway(server, setup.key) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        call = await client.call_tool("denied__whoami", {})
    assert "full__whoami" in names
    assert not [n for n in names if n.startswith("denied__")]
    assert call.is_error
    assert "connector 'denied' is unavailable (egress_denied)" in text_of(call)


async def test_a_server_that_refuses_its_listing_is_left_out_of_it(server: Server, setup: Setup) -> None:
    refusing = peers_mcp.start("refusing", free_port(), "/mcp")
    try:
        register(setup.tenant, "refusing", refusing.url)
        names = await tool_names(server, setup.key)
    finally:
        refusing.stop()
    assert {"full__whoami", "secure__whoami"} <= names
    assert not [n for n in names if n.startswith("refusing__")]
    lines = server.wait_for_log("the gateway left out connector")
    assert any("(refusing): protocol: the server refused the listing" in line for line in lines), lines


async def test_an_unknown_tool_is_an_mcp_error(server: Server, setup: Setup) -> None:
    async with gateway(server, setup.key) as client:
        for name in ("nobody__whoami", "whoami", "full__", "full__nosuchtool-0badc0de"):
            with pytest.raises(MCPError, match="no such tool"):
                await client.call_tool(name, {})


async def test_names_clients_refuse_are_made_plain_and_still_callable(server: Server, setup: Setup) -> None:
    async with gateway(server, setup.key) as client:
        names = [t.name for t in (await client.list_tools()).tools if t.name.startswith("full__")]
        odd = [n for n in names if n.startswith("full__read_file_v2-")]
        long = [n for n in names if n.startswith("full__measure_x")]
        assert len(odd) == 1, names
        assert len(long) == 1, names
        assert len(long[0]) <= 64
        assert all(MCP_NAME.match(n) for n in names)
        read = await client.call_tool(odd[0], {"path": "/etc/motd"})
        measured = await client.call_tool(long[0], {})
    assert text_of(read) == "gw-full read /etc/motd"
    assert text_of(measured) == "measured"


async def test_paused_and_deprecated_connectors_are_not_served(server: Server, setup: Setup) -> None:
    for status in ("disconnected", "deprecated"):
        response = setup.tenant.http.put(f"/api/v1/connectors/{setup.secure['id']}", json={"status": status})
        assert response.status_code == 200, response.text
        names = await tool_names(server, setup.key)
        assert "full__whoami" in names
        assert not [n for n in names if n.startswith("secure__")], status
        if status == "disconnected":
            async with gateway(server, setup.key) as client:
                with pytest.raises(MCPError, match="no such tool"):
                    await client.call_tool("secure__whoami", {})


async def test_an_error_the_server_answers_is_passed_on_as_it_said(server: Server, setup: Setup) -> None:
    async with Client(setup_url(setup, "full")) as direct:
        with pytest.raises(MCPError) as said:
            await direct.read_resource("test://nothing")
    async with gateway(server, setup.key) as client:
        with pytest.raises(MCPError) as passed:
            await client.read_resource("connectord://full/test://nothing")
        assert text_of(await client.call_tool("full__whoami", {})) == "gw-full"
    assert (passed.value.code, passed.value.message) == (said.value.code, said.value.message)
    assert "unavailable" not in passed.value.message


# --- timeouts ---------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listening:
        yield listening.getsockname()[1]


async def test_requests_that_list_at_once_share_one_reading_of_a_server(server: Server, setup: Setup) -> None:
    slow = peers_mcp.start(
        "gateway", free_port(), "/mcp", {"MCP_TEST_NAME": "gw-slow", "MCP_TEST_DELAY": "0.2"}
    )
    agents = 8
    try:
        register(setup.tenant, "slow", slow.url)
        before = gateway_counts(server).get(("list", "ok", ""), 0)
        listed = await asyncio.gather(*(tool_names(server, setup.key) for _ in range(agents)))
        read = gateway_counts(server)[("list", "ok", "")] - before
    finally:
        slow.stop()
    assert all("slow__whoami" in names and "full__whoami" in names for names in listed)
    # The slow server was read once (full and secure at most once more each), not once per agent.
    assert read <= 3, read


async def test_a_slow_tool_is_cut_at_the_connectors_timeout(server: Server, setup: Setup) -> None:
    full_url = setup_url(setup, "full")
    register(setup.tenant, "slow", full_url, timeout=1)
    async with gateway(server, setup.key) as client:
        assert text_of(await client.call_tool("slow__wait", {"seconds": 0})) == "waited"
        started = time.monotonic()
        cut = await client.call_tool("slow__wait", {"seconds": 30})
        took = time.monotonic() - started
        up = await client.call_tool("full__wait", {"seconds": 0})
    assert cut.is_error
    assert "connector 'slow' is unavailable (timeout)" in text_of(cut)
    assert took < 10, took  # the connector's 1 s, not the tool's 30 s
    assert text_of(up) == "waited"


async def test_a_server_that_never_answers_delays_a_listing_by_its_timeout_only(
    server: Server, setup: Setup, silent_port: int
) -> None:
    register(setup.tenant, "silent", f"http://127.0.0.1:{silent_port}/mcp", timeout=1)
    async with gateway(server, setup.key) as client:
        started = time.monotonic()
        names = {t.name for t in (await client.list_tools()).tools}
        took = time.monotonic() - started
        call = await client.call_tool("silent__whoami", {})
    assert {"full__whoami", "secure__whoami"} <= names
    assert not [n for n in names if n.startswith("silent__")]
    assert took < 10, took
    assert call.is_error
    assert "connector 'silent' is unavailable (timeout)" in text_of(call)


async def test_a_listing_ends_within_its_bound_however_many_servers_hang(
    server: Server, setup: Setup, silent_port: int
) -> None:
    # More silent servers than are listed at once, each without a timeout of its own.
    hanging = LIST_CONCURRENCY + 1
    for n in range(hanging):
        register(setup.tenant, f"hung{n}", f"http://127.0.0.1:{silent_port}/mcp")
    async with gateway(server, setup.key) as client:
        started = time.monotonic()
        first = {t.name for t in (await client.list_tools()).tools}
        took_first = time.monotonic() - started
        started = time.monotonic()
        again = {t.name for t in (await client.list_tools()).tools}
        took_again = time.monotonic() - started
    assert {"full__whoami", "secure__whoami"} <= first
    assert first == again
    assert not [n for n in first if n.startswith("hung")]
    # One LIST_TIMEOUT for all of them (two rounds of slots would take twice as long)...
    assert LIST_TIMEOUT - 1 < took_first < LIST_TIMEOUT * 1.6, took_first
    # ... and their failures are remembered: the next listing does not wait for them again.
    assert took_again < LIST_TIMEOUT / 2, took_again


# --- OAuth 2.0 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    """The tests' OAuth 2.0 token server (tokens that live long: refresh timing is
    ``tests/use/test_oauth.py``'s matter)."""
    peer = TokenServer(ttl=300.0).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def oauth_peer(token_server: TokenServer) -> Iterator[peers_mcp.McpPeer]:
    """A server that takes only the bearer tokens the token server issued."""
    env = {"MCP_TEST_NAME": "gw-oauth", "MCP_TEST_TOKEN_CHECK": token_server.api_url("/check")}
    peer = peers_mcp.start("gateway", free_port(), "/mcp", env)
    yield peer
    peer.stop()


async def test_an_oauth_connector_is_called_with_the_token_connectord_obtains(
    server: Server, setup: Setup, token_server: TokenServer, oauth_peer: peers_mcp.McpPeer
) -> None:
    client_id, client_secret = "gw-" + secrets.token_hex(4), "cs-" + secrets.token_hex(12)
    token_server.add_client(client_id, client_secret)
    refresh = token_server.issue_refresh_token(client_id)
    oauth = {
        "kind": "oauth2_refresh_token",
        "token_url": token_server.token_url,
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh,
    }
    both = {"name": "both", "connector_type": "mcp", "endpoint": oauth_peer.url}
    both["config"] = {"oauth": oauth, "bearer_token": "x" * 16}
    refused_config = setup.tenant.http.post("/api/v1/connectors", json=both)
    assert "not bearer_token and oauth" in assert_problem(refused_config, 422)["errors"][0]["msg"]
    made = register(setup.tenant, "oauthed", oauth_peer.url, oauth=oauth)
    assert {"oauth.client_secret", "oauth.refresh_token"} <= set(made["secret_fields"]), made
    answers: list[str] = []
    async with gateway(server, setup.key) as client:
        for _ in range(2):
            called = await client.call_tool("oauthed__whoami", {})
            answers.append(called.model_dump_json())
            assert (called.is_error, text_of(called)) == (False, "gw-oauth")
        # A test of the connector uses the same token: the broker keeps one per connector.
        tested = setup.tenant.http.post(f"/api/v1/connectors/{made['id']}/test").json()
        assert tested["success"], tested
        # One token for both calls and the test, shown on every request.
        assert token_server.grant_count() == 1
        (first,) = set(token_server.api_calls)
        assert first.startswith("Bearer at-")
        # The server refuses it before its expiry (revoked there): one new token, one more try.
        issued = set(token_server.issued)
        with token_server._lock:
            del token_server.issued[first.removeprefix("Bearer ")]
        again = await client.call_tool("oauthed__whoami", {})
        assert (again.is_error, text_of(again)) == (False, "gw-oauth")
        assert token_server.grant_count() == 2
        # The refresh token revoked too: the user must reconnect.
        token_server.revoke(refresh)
        issued |= set(token_server.issued)
        with token_server._lock:
            token_server.issued.clear()
        refused = await client.call_tool("oauthed__whoami", {})
        answers.append(refused.model_dump_json())
    assert refused.is_error
    assert "connector 'oauthed' is unavailable (auth)" in text_of(refused)
    info = setup.tenant.http.get(f"/api/v1/connectors/{made['id']}").json()
    assert info["status"] == "error"
    server.wait_for_log("/api/v1/mcp")
    log = server.log_text()
    assert len(issued) == 2
    for secret in [client_secret, refresh, *issued]:
        assert secret not in log
        assert all(secret not in answer for answer in answers)


# --- keys -------------------------------------------------------------------------------


def test_a_missing_key_is_401_and_a_key_without_the_use_scope_403(server: Server, setup: Setup) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    plain = server.client(headers=headers)
    missing = assert_problem(plain.post("/api/v1/mcp", json=initialize), 401, "unauthorized")
    assert "API key" in missing["detail"]
    bad = server.client("cdk_not-a-key", headers=headers)
    assert_problem(bad.post("/api/v1/mcp", json=initialize), 401, "unauthorized")
    reader = server.client(setup.tenant.key, headers=headers)  # read, write, test: not use
    body = assert_problem(reader.post("/api/v1/mcp", json=initialize), 403, "forbidden")
    assert "connectors:use" in body["detail"]
    for method in ("GET", "DELETE"):  # every request, not only POST
        assert_problem(plain.request(method, "/api/v1/mcp"), 401, "unauthorized")
    user = server.client(setup.key, headers=headers)
    answered = user.post("/api/v1/mcp", json=initialize)
    assert answered.status_code == 200, answered.text
    assert answered.json()["result"]["serverInfo"]["name"] == "connectord"


def test_bad_requests_are_refused_precisely(server: Server, setup: Setup) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    user = server.client(setup.key, headers=headers)
    for method in ("GET", "DELETE", "PUT"):  # stateless: no stream to open, no session to end
        answer = user.request(method, "/api/v1/mcp")
        assert_problem(answer, 405, "method-not-allowed")
        assert answer.headers["allow"] == "POST"
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "' + b"x" * 70_000 + b'"}}'
    big = user.post("/api/v1/mcp", content=body, headers={"content-type": "application/json"})
    assert_problem(big, 413, "payload-too-large")
    # MCP's own refusals are JSON-RPC errors, as MCP clients expect (never a 500).
    raw = httpx.Client(base_url=server.base_url, headers={**headers, "Authorization": f"Bearer {setup.key}"})
    with raw:
        broken = raw.post("/api/v1/mcp", content=b"{nope", headers={"content-type": "application/json"})
        unknown = raw.post("/api/v1/mcp", json={"jsonrpc": "2.0", "id": 7, "method": "nope/x", "params": {}})
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, -32700)
    assert (unknown.status_code, unknown.json()["id"], unknown.json()["error"]["code"]) == (200, 7, -32601)


def test_a_key_past_its_rate_is_429_and_other_keys_go_on(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with run_server(
        "sqlite", tmp_path_factory.mktemp("gw-rate"), request, CONNECTORD_PROXY_RATE="2"
    ) as tight:
        tenant = create_tenant(tight, "gw-rate")
        busy = tight.client(create_key(tight, tenant, ["connectors:use"]), headers=headers)
        assert [busy.post("/api/v1/mcp", json=ping).status_code for _ in range(2)] == [200, 200]
        refused = busy.post("/api/v1/mcp", json=ping)
        body = assert_problem(refused, 429, "rate-limited")
        assert "MCP gateway requests per minute" in body["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        other = tight.client(create_key(tight, tenant, ["connectors:use"]), headers=headers)
        assert other.post("/api/v1/mcp", json=ping).status_code == 200


async def test_the_official_client_is_refused_without_the_scope(server: Server, setup: Setup) -> None:
    answers: list[httpx2.Response] = []

    async def keep(response: httpx2.Response) -> None:
        await response.aread()
        answers.append(response)

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {setup.tenant.key}"},
        timeout=30,
        event_hooks={"response": [keep]},
    )
    url = f"{server.base_url}/api/v1/mcp"
    # The SDK turns the refusal into a JSON-RPC error of its own (inside a task group's).
    with pytest.raises(BaseException) as raised:  # noqa: PT011
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await client.list_tools()
    assert raised.group_contains(MCPError)
    assert answers, "no HTTP answer reached the client"
    for answer in answers:
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "connectors:use" in answer.json()["detail"]


@pytest.mark.parametrize("by", ["ids", "selector"])
async def test_a_narrowed_key_sees_only_its_connectors(server: Server, setup: Setup, by: str) -> None:
    paying = register(setup.tenant, "paying", setup_url(setup, "full"), metadata={"team": "payments"})
    reach: dict[str, Any] = (
        {"connector_ids": [paying["id"]]} if by == "ids" else {"selector": {"team": "payments"}}
    )
    response = server.admin().post(
        f"/api/v1/tenants/{setup.tenant.id}/keys",
        json={"name": "payments", "scopes": ["connectors:use"], **reach},
    )
    assert response.status_code == 201, response.text
    narrowed = response.json()["api_key"]
    names = await tool_names(server, narrowed)
    assert "paying__whoami" in names
    assert not [n for n in names if not n.startswith("paying__")], names
    async with gateway(server, narrowed) as client:
        for tool in ("secure__whoami", "full__whoami"):
            with pytest.raises(MCPError, match="no such tool"):
                await client.call_tool(tool, {})
        with pytest.raises(MCPError, match="no such resource"):
            await client.read_resource("connectord://secure/test://greeting")
        with pytest.raises(MCPError, match="no such prompt"):
            await client.get_prompt("full__review", {"code": "x"})
        assert text_of(await client.call_tool("paying__whoami", {})) == "gw-full"


async def test_another_tenants_connectors_are_not_seen(server: Server, setup: Setup) -> None:
    other = create_tenant(server, "gw-other")
    names = await tool_names(server, create_key(server, other, ["connectors:use"]))
    assert names == set()


# --- resources and prompts --------------------------------------------------------------


async def test_resources_and_prompts_are_prefixed_and_readable(server: Server, setup: Setup) -> None:
    async with gateway(server, setup.key) as client:
        resources = {r.uri for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        read = await client.read_resource("connectord://secure/test://greeting")
        item = await client.read_resource("connectord://full/test://items/42")
        prompt = await client.get_prompt("full__review", {"code": "x = 1"})
        with pytest.raises(MCPError, match="no such resource"):
            await client.read_resource("test://greeting")
        with pytest.raises(MCPError, match="no such prompt"):
            await client.get_prompt("nobody__review", {"code": "x"})
    assert {"connectord://full/test://greeting", "connectord://secure/test://greeting"} <= resources
    assert {"connectord://full/test://items/{item}", "connectord://secure/test://items/{item}"} <= templates
    assert {"full__review", "secure__review"} <= prompts
    assert [(c.uri, c.text) for c in read.contents] == [
        ("connectord://secure/test://greeting", "hello from gw-secure")
    ]
    assert [c.text for c in item.contents] == ["gw-full item 42"]
    assert "Review this code from gw-full: x = 1" in json.dumps(prompt.model_dump(mode="json"))


# --- secrets, use and metrics -----------------------------------------------------------


async def test_no_secret_in_any_answer_or_log_line(server: Server, setup: Setup) -> None:
    answers: list[str] = []
    async with gateway(server, setup.key) as client:
        leaked = await client.call_tool("secure__leak", {})
        answers.append(leaked.model_dump_json())
        answers.append((await client.list_tools()).model_dump_json())
        answers.append((await client.read_resource("connectord://secure/test://greeting")).model_dump_json())
    register(setup.tenant, "echoing", f"http://127.0.0.1:{free_port()}/mcp", bearer_token=TOKEN)
    async with gateway(server, setup.key) as client:
        answers.append((await client.call_tool("echoing__whoami", {})).model_dump_json())
    # The server echoed the token into its answer: the gateway masked it.
    assert text_of(leaked) == "the token is [redacted]"
    for answer in answers:
        assert TOKEN not in answer
    server.wait_for_log("/api/v1/mcp")
    log = server.log_text()
    assert TOKEN not in log
    assert setup.key not in log
    connector = setup.tenant.http.get(f"/api/v1/connectors/{setup.secure['id']}").text
    assert TOKEN not in connector


async def test_a_gateway_call_sets_last_used_at(server: Server, setup: Setup) -> None:
    assert setup.full["last_used_at"] is None
    async with gateway(server, setup.key) as client:
        await client.call_tool("full__whoami", {})
    deadline = time.monotonic() + 10
    while True:
        info = setup.tenant.http.get(f"/api/v1/connectors/{setup.full['id']}").json()
        if info["last_used_at"] is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert info["last_used_at"] is not None
    assert info["last_used_at"] >= setup.full["created_at"]


def gateway_counts(server: Server) -> dict[tuple[str, str, str], float]:
    """``connectord_gateway_calls_total`` by (method, outcome, error kind)."""
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(server.client().get("/metrics").text):
        for sample in family.samples:
            if sample.name == "connectord_gateway_calls_total":
                labels = sample.labels
                counts[(labels["method"], labels["outcome"], labels["error_kind"])] = sample.value
    return counts


async def test_gateway_calls_are_counted_by_outcome(server: Server, setup: Setup) -> None:
    before = gateway_counts(server)
    async with gateway(server, setup.key) as client:
        await client.call_tool("full__whoami", {})
        with pytest.raises(MCPError):
            await client.call_tool("nobody__whoami", {})
    after = gateway_counts(server)
    for labels in (("tools/call", "ok", ""), ("tools/call", "not_found", "")):
        assert after[labels] == before.get(labels, 0) + 1, labels


# --- the example ------------------------------------------------------------------------


def test_the_agent_example_lists_and_calls_through_the_gateway(server: Server, setup: Setup) -> None:
    env = {**os.environ, "CONNECTORD_URL": server.base_url, "CONNECTORD_API_KEY": setup.key}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "full__add", '{"a": 20, "b": 22}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "full__whoami" in done.stdout
    assert "secure__whoami" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "full__add -> 42"


# --- the naming rules (pure) ------------------------------------------------------------


def _info(name: str, connector_id: str | None = None) -> ConnectorInfo:
    return ConnectorInfo.from_dict(
        {
            "id": connector_id or secrets.token_hex(8),
            "name": name,
            "connector_type": "mcp",
            "status": "registered",
            "tenant_id": "t",
            "created_at": "2026-01-01T00:00:00+00:00",
        }
    )


def test_plain_connector_names_are_their_own_prefix() -> None:
    infos = [_info("github"), _info("my_server-2"), _info("A" * PREFIX_MAX)]
    assert sorted(assign_prefixes(infos)) == sorted(i.name for i in infos)


@pytest.mark.parametrize(
    "name",
    ["team payments", "db/prod", "café", "a__b", "_lead", "trail_", "x" * (PREFIX_MAX + 1), "ops@eu:1"],
)
def test_other_connector_names_get_a_plain_hashed_prefix(name: str) -> None:
    info = _info(name, "c-123")
    (prefix,) = assign_prefixes([info])
    assert re.match(r"^[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*-[0-9a-f]{8}$", prefix), prefix
    assert len(prefix) <= PREFIX_MAX
    assert SEP not in prefix
    assert assign_prefixes([_info(name, "c-123")]) == {prefix: info}  # stable


SEP = "__"


def test_connectors_that_would_share_a_prefix_both_take_the_hashed_form() -> None:
    made = [_info("a b", "id-1"), _info("a/b", "id-2"), _info("solo", "id-3")]
    prefixes = assign_prefixes(made)
    assert len(prefixes) == 3
    assert prefixes["solo"].id == "id-3"
    assert {p.split("-")[0] for p in prefixes if p != "solo"} == {"a_b"}


@pytest.mark.parametrize("tool", ["add", "read.file v2", "x" * 200, "résumé", "dash-and_under", "a" * 58])
def test_exposed_names_fit_what_clients_accept_and_split_back(tool: str) -> None:
    for prefix in ("p", "A" * PREFIX_MAX):
        name = exposed_name(prefix, tool)
        assert MCP_NAME.match(name), name
        assert len(name) <= NAME_MAX
        assert name.partition(SEP)[0] == prefix
        if re.match(r"^[A-Za-z0-9_-]+$", tool) and len(prefix) + 2 + len(tool) <= NAME_MAX:
            assert name == f"{prefix}__{tool}"
    assert exposed_name("p", "a b") != exposed_name("p", "a/b")  # made plain, told apart by the hash


def test_resource_uris_are_prefixed_reversibly() -> None:
    for uri in ("test://greeting", "file:///etc/x?y=1#z", "users://{id}/profile", "a/b/c"):
        assert split_uri(exposed_uri("full", uri)) == ("full", uri)
    assert split_uri("test://greeting") is None
    assert split_uri("connectord://full") is None
    assert split_uri("connectord:///x") is None
