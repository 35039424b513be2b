"""OAuth 2.0 through the proxy: connectord obtains access tokens from a token server written
in the tests (``tests/oauth_server.py``, tokens living 2 s), keeps them until shortly before
they expire, refreshes once across replicas, and marks a connector whose refresh token was
refused. Every server is real and on loopback: ``connectord serve`` processes (SQLite, and
two replicas on one PostgreSQL database made for the test) and the aiohttp token server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings
from tests.api.conftest import Server, Tenant, assert_problem, create_key, create_tenant, run_server
from tests.cli_server import CLI_ENV, start_serve
from tests.oauth_server import TokenServer

CLIENT_ID = "connectord-client"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on SQLite, loopback opened."""
    with run_server("sqlite", tmp_path_factory.mktemp("oauth"), request) as running:
        yield running


@pytest.fixture
def tokens() -> Iterator[TokenServer]:
    """A token server of the test's own with one confidential client (tokens live 2 s)."""
    peer = TokenServer(ttl=2.0).start()
    peer.add_client(CLIENT_ID, "cs-" + secrets.token_hex(12))
    yield peer
    peer.stop()


class Use:
    """A tenant, a ``connectors:use`` key, and the proxy of its connectors."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.tenant: Tenant = create_tenant(server, "oa")
        self.key = create_key(server, self.tenant, ["connectors:use"])
        self.http = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def register(self, name: str, endpoint: str, auth: dict[str, Any]) -> str:
        """An ``http`` connector with this auth; its id."""
        body = {"name": name, "connector_type": "http", "endpoint": endpoint, "config": {"auth": auth}}
        response = self.tenant.http.post("/api/v1/connectors", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def get(self, connector_id: str, path: str = "/items") -> httpx.Response:
        """A GET through the proxy."""
        return self.http.get(f"/api/v1/connectors/{connector_id}/proxy{path}")

    def connector(self, connector_id: str) -> dict[str, Any]:
        """The connector as the REST API shows it."""
        body: dict[str, Any] = self.tenant.http.get(f"/api/v1/connectors/{connector_id}").json()
        return body


@pytest.fixture
def use(server: Server) -> Iterator[Use]:
    """A fresh tenant and key on the server."""
    made = Use(server)
    yield made
    made.http.close()


def _secret(peer: TokenServer) -> str:
    secret = peer._clients[CLIENT_ID].secret
    assert secret is not None
    return secret


def refresh_auth(peer: TokenServer, refresh_token: str, **extra: Any) -> dict[str, Any]:
    """The auth of a connector holding a refresh token of the token server."""
    return {
        "kind": "oauth2_refresh_token",
        "token_url": peer.token_url,
        "client_id": CLIENT_ID,
        "client_secret": _secret(peer),
        "refresh_token": refresh_token,
        **extra,
    }


def assert_no_leak(texts: list[str], values: list[str]) -> None:
    """None of the secret values (nor their Basic encodings) in any of the texts."""
    for value in values:
        encoded = base64.b64encode(f"{CLIENT_ID}:{value}".encode()).decode()
        for text in texts:
            assert value not in text, "a secret leaked"
            assert encoded not in text, "a secret leaked (Basic-encoded)"


def _server_texts(server: Server, use: Use, connector_id: str) -> list[str]:
    return [
        server.log_text(),
        httpx.get(f"{server.base_url}/metrics", timeout=10).text,
        use.tenant.http.get("/api/v1/audit").text,
        use.tenant.http.get(f"/api/v1/connectors/{connector_id}").text,
        use.tenant.http.get(f"/api/v1/connectors/{connector_id}/history").text,
    ]


def test_tokens_are_refreshed_before_they_expire(server: Server, use: Use, tokens: TokenServer) -> None:
    tokens.rotate = True  # each refresh hands back a new refresh token, the old one dies
    connector = use.register(
        "api", tokens.api_url(), refresh_auth(tokens, tokens.issue_refresh_token(CLIENT_ID))
    )
    answers = []
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        answers.append(use.get(connector))
        time.sleep(0.1)
    assert [a.status_code for a in answers] == [200] * len(answers), answers[-1].text
    # Never an expired token sent (the proxy's retry after a 401 would hide it otherwise).
    assert tokens.expired_uses == []
    assert len(tokens.api_calls) == len(answers)
    # Refreshed ahead of expiry (a quarter of a 2 s life), so about every 1.5 s: not per request.
    assert 3 <= tokens.grant_count("refresh_token") <= 6
    # The rotated refresh token was stored and used: only the newest is still valid.
    assert len(tokens.refresh_tokens(CLIENT_ID)) == 1
    assert tokens.refusals == []
    assert_no_leak(_server_texts(server, use, connector), tokens.secrets_used())


def test_client_credentials_grant(server: Server, use: Use, tokens: TokenServer) -> None:
    tokens.ttl = 30
    basic = use.register(
        "cc-basic",
        tokens.api_url(),
        {
            "kind": "oauth2_client_credentials",
            "token_url": tokens.token_url,
            "client_id": CLIENT_ID,
            "client_secret": _secret(tokens),
            "scope": "read",
        },
    )
    body = use.register(
        "cc-body",
        tokens.api_url(),
        {
            "kind": "oauth2_client_credentials",
            "token_url": tokens.token_url,
            "client_id": CLIENT_ID,
            "client_secret": _secret(tokens),
            "client_auth": "body",
        },
    )
    for _ in range(5):
        assert use.get(basic).status_code == 200
        assert use.get(body).status_code == 200
    # One token per connector, kept for its life (encrypted in the store).
    assert tokens.grant_count("client_credentials") == 2
    assert all(call.startswith("Bearer at-") for call in tokens.api_calls)
    assert_no_leak(_server_texts(server, use, basic), tokens.secrets_used())


def test_wrong_client_secret_is_an_auth_problem(use: Use, tokens: TokenServer) -> None:
    connector = use.register(
        "cc-wrong",
        tokens.api_url(),
        {
            "kind": "oauth2_client_credentials",
            "token_url": tokens.token_url,
            "client_id": CLIENT_ID,
            "client_secret": "not-the-secret",
        },
    )
    body = assert_problem(use.get(connector), 502, "proxy-failed")
    assert body["error_kind"] == "auth"
    assert "not-the-secret" not in body["detail"]
    assert tokens.api_calls == []


def test_invalid_grant_marks_the_connector(server: Server, use: Use, tokens: TokenServer) -> None:
    refresh_token = tokens.issue_refresh_token(CLIENT_ID)
    connector = use.register("revoked", tokens.api_url(), refresh_auth(tokens, refresh_token))
    tokens.revoke(refresh_token)
    body = assert_problem(use.get(connector), 502, "proxy-failed")
    assert body["error_kind"] == "auth"
    assert "reconnect" in body["detail"]
    info = use.connector(connector)
    assert info["status"] == "error"
    history = use.tenant.http.get(f"/api/v1/connectors/{connector}/history").json()["items"]
    latest = history[0]
    assert latest["success"] is False
    assert latest["details"]["error_kind"] == "auth"
    assert "must reconnect" in latest["error"]
    # Remembered: the token endpoint is not asked again until the connector is reconnected.
    assert_problem(use.get(connector), 502, "proxy-failed")
    assert tokens.refusals == ["invalid_grant"]
    # Reconnecting (a new refresh token) makes it work again.
    fresh = tokens.issue_refresh_token(CLIENT_ID)
    updated = use.tenant.http.put(
        f"/api/v1/connectors/{connector}", json={"config": {"auth": refresh_auth(tokens, fresh)}}
    )
    assert updated.status_code == 200, updated.text
    assert use.get(connector).status_code == 200
    assert tokens.grant_count("refresh_token") == 1
    assert_no_leak(_server_texts(server, use, connector), [*tokens.secrets_used(), refresh_token])


def test_token_refused_by_the_api_is_replaced_once(use: Use, tokens: TokenServer) -> None:
    tokens.ttl = 60
    connector = use.register(
        "revoked-at", tokens.api_url(), refresh_auth(tokens, tokens.issue_refresh_token(CLIENT_ID))
    )
    assert use.get(connector).status_code == 200
    first = tokens.api_calls[-1].removeprefix("Bearer ")
    tokens.issued.pop(first)  # the API forgets the token before its expiry (revoked)
    assert use.get(connector).status_code == 200
    assert tokens.grant_count() == 2
    assert tokens.api_calls[-2:] == [f"Bearer {first}", tokens.api_calls[-1]]
    assert tokens.api_calls[-1] != f"Bearer {first}"


def test_token_endpoint_behind_the_egress_policy(use: Use, tokens: TokenServer) -> None:
    denied_url = tokens.token_url.replace("127.0.0.1", "169.254.169.254")
    connector = use.register(
        "denied-token",
        tokens.api_url(),
        {
            "kind": "oauth2_client_credentials",
            "token_url": denied_url,
            "client_id": CLIENT_ID,
            "client_secret": _secret(tokens),
        },
    )
    # The server allows 127.0.0.0/8 only: the link-local token URL is refused, never connected to.
    body = assert_problem(use.get(connector), 502, "proxy-failed")
    assert body["error_kind"] == "egress_denied"
    assert tokens.grants == []


def test_connector_test_uses_the_stored_token(use: Use, tokens: TokenServer) -> None:
    tokens.ttl = 60
    connector = use.register(
        "tested", tokens.api_url("/v1"), refresh_auth(tokens, tokens.issue_refresh_token(CLIENT_ID))
    )
    assert use.get(connector).status_code == 200
    result = use.tenant.http.post(f"/api/v1/connectors/{connector}/test").json()
    assert result["success"] is True, result
    # The test sent the token the proxy obtained: a refresh token is never spent twice.
    assert tokens.grant_count() == 1
    assert tokens.api_calls[-1] == tokens.api_calls[0]
    assert use.connector(connector)["status"] == "connected"

    revoked = tokens.issue_refresh_token(CLIENT_ID)
    other = use.register("tested-revoked", tokens.api_url("/v1"), refresh_auth(tokens, revoked))
    tokens.revoke(revoked)
    failed = use.tenant.http.post(f"/api/v1/connectors/{other}/test").json()
    assert failed["success"] is False
    assert failed["details"]["error_kind"] == "auth"
    assert "must reconnect" in failed["error"]
    # One failed result: the test's own (the broker leaves recording it to the test).
    history = use.tenant.http.get(f"/api/v1/connectors/{other}/history").json()["items"]
    assert len(history) == 1
    assert use.connector(other)["status"] == "error"


def test_unsaved_refresh_token_definition_is_not_tested(use: Use, tokens: TokenServer) -> None:
    refresh_token = tokens.issue_refresh_token(CLIENT_ID)
    body = {
        "name": "unsaved",
        "connector_type": "http",
        "endpoint": tokens.api_url("/v1"),
        "config": {"auth": refresh_auth(tokens, refresh_token)},
    }
    result = use.tenant.http.post("/api/v1/connectors/test", json=body).json()
    assert result["success"] is False
    assert result["details"]["error_kind"] == "invalid_config"
    # Never spent: a rotating server would have invalidated the one the user holds.
    assert tokens.grants == []
    assert refresh_token in tokens.refresh_tokens(CLIENT_ID)


# --- two replicas, one refresh -------------------------------------------------------


async def _seed(settings: Settings, peer: TokenServer) -> tuple[str, str]:
    async with ConnectorsFacade(settings=settings) as facade:
        admin = Admin(facade)
        tenant, _ = await admin.create_tenant("replicated")
        key = await admin.create_key(tenant.id, name="use", scopes=("connectors:use",), actor="tests")
        info = await facade.register_connector(
            tenant.id,
            "api",
            "http",
            endpoint=peer.api_url(),
            config={"auth": refresh_auth(peer, peer.issue_refresh_token(CLIENT_ID))},
        )
        return key.api_key, info.id


async def _burst(urls: list[str], key: str, connector_id: str, n: int) -> list[int]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.get(f"{urls[i % len(urls)]}/api/v1/connectors/{connector_id}/proxy/r/{i}")
                for i in range(n)
            )
        )
    return [a.status_code for a in answers]


@pytest.mark.postgres
def test_fifty_calls_across_two_replicas_refresh_once(
    fresh_pg_url: str, secret_key_value: str, tmp_path: Path
) -> None:
    peer = TokenServer(ttl=60, delay=0.5).start()  # a slow endpoint: every request overlaps it
    try:
        peer.add_client(CLIENT_ID, "cs-" + secrets.token_hex(12))
        settings = Settings(data_dir=tmp_path, database_url=fresh_pg_url, secret_key=secret_key_value)
        key, connector_id = asyncio.run(_seed(settings, peer))
        base = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_") and k not in CLI_ENV}
        env = base | {
            "CONNECTORD_DATA_DIR": str(tmp_path),
            "CONNECTORD_DATABASE_URL": fresh_pg_url,
            "CONNECTORD_SECRET_KEY": secret_key_value,
            "CONNECTORD_EGRESS_ALLOW": "127.0.0.0/8",
            "CONNECTORD_SCHEDULER": "off",
            "CONNECTORD_WEBHOOKS": "off",
            "CONNECTORD_LOG_FORMAT": "json",
        }
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        replicas: list[subprocess.Popen[bytes]] = []
        try:
            urls = []
            for log in logs:
                proc, url = start_serve(env, log)
                replicas.append(proc)
                urls.append(url)
            statuses = asyncio.run(_burst(urls, key, connector_id, 50))
            assert statuses == [200] * 50
            assert peer.grant_count() == 1
            assert len(peer.api_calls) == 50
            # Both replicas served the burst with that one token.
            assert len(set(peer.api_calls)) == 1
            texts = [log.read_text() for log in logs]
            texts += [httpx.get(f"{url}/metrics", timeout=10).text for url in urls]
        finally:
            for proc in replicas:
                proc.terminate()
            for proc in replicas:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        assert_no_leak(texts, [*peer.secrets_used(), key])
    finally:
        peer.stop()


# --- the token rows, on every backend (store contract) -------------------------------


async def test_token_row_lease_save_release(facade: ConnectorsFacade, tenant: str, other_tenant: str) -> None:
    store = facade.store
    info = await facade.register_connector(tenant, "leased", "http", endpoint="http://127.0.0.1:1/")
    now = datetime.now(UTC)
    until = now + timedelta(seconds=30)
    assert await store.get_oauth_token(tenant, info.id) is None
    # Another tenant's id, or no connector at all: no lease, no row.
    assert await store.lease_oauth_token(other_tenant, info.id, "a", now, until) is None
    assert await store.lease_oauth_token(tenant, "missing", "a", now, until) is None
    first = await store.lease_oauth_token(tenant, info.id, "a", now, until)
    assert first is not None
    assert first.token is None
    assert first.lease_owner == "a"
    # One owner at a time, until the lease expires; the owner may take it again.
    assert await store.lease_oauth_token(tenant, info.id, "b", now, until) is None
    assert await store.lease_oauth_token(tenant, info.id, "a", now, until) is not None
    sealed = facade.keyring.encrypt(b"at-1", b"aad")

    # Only the holder saves.
    async def save(owner: str) -> bool:
        return await store.save_oauth_token(
            tenant,
            info.id,
            owner,
            fingerprint="f" * 64,
            token=sealed,
            refresh_at=until,
            expires_at=until,
            now=now,
        )

    assert await save("b") is False
    assert await save("a") is True
    row = await store.get_oauth_token(tenant, info.id)
    assert row is not None
    assert row.lease_owner is None
    assert row.token is not None
    assert facade.keyring.decrypt(row.token, b"aad") == b"at-1"
    # An expired lease is taken over.
    assert await store.lease_oauth_token(tenant, info.id, "a", now, now + timedelta(seconds=1)) is not None
    later = now + timedelta(seconds=2)
    assert (
        await store.lease_oauth_token(tenant, info.id, "b", later, later + timedelta(seconds=30)) is not None
    )
    # A refused grant forgets the token and keeps the marker.
    await store.release_oauth_token(tenant, info.id, "b", refused="!" + "f" * 63)
    row = await store.get_oauth_token(tenant, info.id)
    assert row is not None
    assert (row.fingerprint, row.token, row.lease_owner) == ("!" + "f" * 63, None, None)
    # The row goes with its connector.
    assert await facade.delete_connector(info.id, tenant)
    assert await store.get_oauth_token(tenant, info.id) is None
