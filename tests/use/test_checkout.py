"""Credential checkout (``POST /connectors/{id}/credentials``, ``docs/use.md``) against a
real ``connectord serve`` on SQLite and PostgreSQL, with connectors of the real servers
on loopback: PostgreSQL (its DSN is used to connect) and RabbitMQ (guest/guest).

What is checked: the ``connectors:use`` scope, secrets revealed and a working DSN,
``Cache-Control: no-store``, the ``connector.use`` audit record (with the key id, and no
secret value anywhere in the audit table, the events table or the server log), the
tenant setting that turns checkout off, ``http``/``mcp`` refused with a pointer to the
proxy and the gateway, a narrowed key, the SDK (sync and async) and the CLI
(``connectors credentials --format json|env|dsn``, the one command that prints secrets).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from typer.testing import CliRunner

from connectord.cli import app as cli_app
from connectord.client import AsyncClient, Client
from connectord.errors import CheckoutDisabledError, NotCheckedOutError, NotFoundError, PermissionDeniedError
from connectord.model import Checkout
from tests.api.conftest import (
    BACKENDS,
    Server,
    Tenant,
    assert_problem,
    create_key,
    create_tenant,
    register,
    run_server,
)
from tests.cli_server import CLI_ENV, run_cli, serve
from tests.conftest import raw_sql_on

C = "/api/v1/connectors"
T = "/api/v1/tenants"
USE = ["connectors:read", "connectors:write", "connectors:use"]
#: Shell and URL specials, so quoting and percent-encoding are exercised (PostgreSQL here
#: trusts loopback, so any password logs in: the DSN must still carry this one intact).
SECRET = f"pw'$ \"&@/:{secrets.token_hex(8)}"
PG_ENDPOINT = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on each backend, shared by this module's API tests."""
    backend = str(request.param)
    with run_server(backend, tmp_path_factory.mktemp(f"checkout-{backend}"), request) as running:
        yield running


def _pg(tenant: Tenant, password: str = SECRET) -> dict[str, Any]:
    return register(
        tenant.http, f"db-{secrets.token_hex(3)}", connector_type="sql", endpoint=PG_ENDPOINT,
        config={"password": password},
    )  # fmt: skip


def _user(server: Server, tenant: Tenant) -> Any:
    return server.client(create_key(server, tenant, USE))


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def test_checkout_reveals_the_secrets_and_a_dsn_that_connects(server: Server) -> None:
    tenant = create_tenant(server, "co")
    db = _pg(tenant)
    user = _user(server, tenant)
    response = user.post(f"{C}/{db['id']}/credentials")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["connector_id"] == db["id"]
    assert body["connector_type"] == "sql"
    assert body["endpoint"] == PG_ENDPOINT
    assert body["config"]["password"] == SECRET
    assert body["dsn"].startswith("postgresql://postgres:")
    assert body["dsn"].endswith("@127.0.0.1:5432/test?sslmode=prefer")
    assert await _select_one(body["dsn"]) == 1
    # A read of the connector still carries no secret: checkout is the only way out.
    assert SECRET not in user.get(f"{C}/{db['id']}").text


async def test_a_stream_checkout_carries_a_dsn_the_broker_accepts(server: Server) -> None:
    tenant = create_tenant(server, "mq")
    mq = register(
        tenant.http, "events", connector_type="stream", endpoint="amqp://guest@127.0.0.1:5672/",
        config={"password": "guest"},
    )  # fmt: skip
    body = _user(server, tenant).post(f"{C}/{mq['id']}/credentials").json()
    assert body["dsn"] == "amqp://guest:guest@127.0.0.1:5672/%2F"
    connection = await aio_pika.connect(body["dsn"], timeout=10)
    await connection.close()


def test_checkout_needs_the_use_scope(server: Server) -> None:
    tenant = create_tenant(server, "sc")
    db = _pg(tenant)
    # The tenant's first key has read, write and test: not use.
    problem = assert_problem(tenant.http.post(f"{C}/{db['id']}/credentials"), 403, "forbidden")
    assert "connectors:use" in problem["detail"]
    assert SECRET not in json.dumps(problem)
    audit = tenant.http.get("/api/v1/audit", params={"connector_id": db["id"]}).json()["items"]
    assert [e["action"] for e in audit] == ["connector.create"]


async def test_checkout_is_audited_with_the_key_and_never_a_value(server: Server) -> None:
    tenant = create_tenant(server, "au")
    db = _pg(tenant)
    key = create_key(server, tenant, USE)
    keys = server.admin().get(f"{T}/{tenant.id}/keys").json()["items"]
    key_id = next(k["id"] for k in keys if k["name"] == "extra")
    user = server.client(key)
    for _ in range(2):
        assert user.post(f"{C}/{db['id']}/credentials").status_code == 200
    events = tenant.http.get("/api/v1/audit", params={"connector_id": db["id"]}).json()["items"]
    uses = [e for e in events if e["action"] == "connector.use"]
    assert len(uses) == 2  # one record per checkout
    assert uses[0]["actor"] == f"key:{key_id}"
    assert uses[0]["details"] == {"purpose": "checkout", "connector_type": "sql"}

    raw = raw_sql_on(server.settings)
    for table in ("audit_events", "events"):
        rows = await raw(f"SELECT * FROM {table} WHERE tenant_id = ?", tenant.id)
        assert rows, table
        assert SECRET not in repr(rows), table
    assert SECRET not in server.log_text()
    assert key not in server.log_text()
    metrics = server.client().get("/metrics").text
    assert 'connectord_connector_uses_total{connector_type="sql",purpose="checkout"}' in metrics
    assert SECRET not in metrics


def test_a_tenant_can_turn_checkout_off(server: Server) -> None:
    tenant = create_tenant(server, "off")
    db = _pg(tenant)
    user = _user(server, tenant)
    admin = server.admin()
    turned = admin.put(f"{T}/{tenant.id}", json={"checkout_enabled": False})
    assert turned.status_code == 200, turned.text
    assert turned.json()["checkout_enabled"] is False
    listed = {t["id"]: t for t in admin.get(T).json()["items"]}
    assert listed[tenant.id]["checkout_enabled"] is False

    problem = assert_problem(user.post(f"{C}/{db['id']}/credentials"), 403, "checkout-disabled")
    assert SECRET not in json.dumps(problem)
    # Only its own tenant is off.
    elsewhere = create_tenant(server, "on")
    other_db = _pg(elsewhere)
    assert _user(server, elsewhere).post(f"{C}/{other_db['id']}/credentials").status_code == 200

    assert admin.put(f"{T}/{tenant.id}", json={"checkout_enabled": True}).json()["checkout_enabled"] is True
    assert user.post(f"{C}/{db['id']}/credentials").status_code == 200
    actions = [e["action"] for e in tenant.http.get("/api/v1/audit", params={"limit": 100}).json()["items"]]
    assert actions.count("tenant.checkout") == 2
    assert actions.count("connector.use") == 1  # the refused checkout left none


def test_the_tenant_setting_route_validates(server: Server) -> None:
    tenant = create_tenant(server, "val")
    admin = server.admin()
    assert_problem(admin.put(f"{T}/{tenant.id}", json={"checkout_enabled": "no"}), 422, "validation")
    assert_problem(admin.put(f"{T}/{tenant.id}", json={"checkout": False}), 422, "validation")
    assert_problem(
        admin.put(f"{T}/{'0' * 8}-0000-7000-8000-{'0' * 12}", json={"checkout_enabled": False}), 404
    )
    assert_problem(tenant.http.put(f"{T}/{tenant.id}", json={"checkout_enabled": False}), 403, "forbidden")
    unchanged = admin.put(f"{T}/{tenant.id}", json={})
    assert unchanged.json()["checkout_enabled"] is True


@pytest.mark.parametrize(
    ("connector_type", "config", "pointer"),
    [
        ("http", {"auth": {"kind": "bearer", "token": SECRET}}, "proxy"),
        ("mcp", {"bearer_token": SECRET}, "MCP gateway"),
    ],
)
def test_http_and_mcp_connectors_are_not_checked_out(
    server: Server, connector_type: str, config: dict[str, Any], pointer: str
) -> None:
    tenant = create_tenant(server, "np")
    made = register(
        tenant.http, "web", connector_type=connector_type, endpoint="http://127.0.0.1:9/", config=config
    )
    problem = assert_problem(
        _user(server, tenant).post(f"{C}/{made['id']}/credentials"), 409, "not-checked-out"
    )
    assert pointer in problem["detail"]
    assert SECRET not in json.dumps(problem)


def test_a_paused_connector_is_not_checked_out(server: Server) -> None:
    tenant = create_tenant(server, "pz")
    db = _pg(tenant)
    assert tenant.http.put(f"{C}/{db['id']}", json={"status": "disconnected"}).status_code == 200
    problem = assert_problem(_user(server, tenant).post(f"{C}/{db['id']}/credentials"), 409, "conflict")
    assert "disconnected" in problem["detail"]


def test_a_narrowed_key_checks_out_only_what_it_covers(server: Server) -> None:
    tenant = create_tenant(server, "nk")
    covered, other = _pg(tenant), _pg(tenant)
    made = server.admin().post(
        f"{T}/{tenant.id}/keys", json={"scopes": ["connectors:use"], "connector_ids": [covered["id"]]}
    )
    narrow = server.client(made.json()["api_key"])
    assert narrow.post(f"{C}/{covered['id']}/credentials").json()["config"]["password"] == SECRET
    problem = assert_problem(narrow.post(f"{C}/{other['id']}/credentials"), 404, "not-found")
    assert other["id"] not in json.dumps(problem)


async def test_the_sdk_checks_credentials_out(server: Server) -> None:
    tenant = create_tenant(server, "sdk")
    db = _pg(tenant)
    web = register(tenant.http, "web", connector_type="http", endpoint="http://127.0.0.1:9/")
    key = create_key(server, tenant, USE)
    with Client(server.base_url, key) as client:
        found = client.credentials(db["id"])
        assert isinstance(found, Checkout)
        assert found.config["password"] == SECRET
        assert SECRET not in repr(found)
        with pytest.raises(NotCheckedOutError):
            client.credentials(web["id"])
        with pytest.raises(NotFoundError):
            client.credentials(f"{'0' * 8}-0000-7000-8000-{'0' * 12}")
    async with AsyncClient(server.base_url, key) as aclient:
        again = await aclient.credentials(db["id"])
        assert again == found
        assert await _select_one(again.dsn or "") == 1
    with Client(server.base_url, tenant.key) as no_use, pytest.raises(PermissionDeniedError):
        no_use.credentials(db["id"])
    with Client(server.base_url, server.admin_key) as operator:
        assert operator.update_tenant(tenant.id, checkout_enabled=False).checkout_enabled is False
    with Client(server.base_url, key) as client, pytest.raises(CheckoutDisabledError):
        client.credentials(db["id"])


# --- the CLI against a real server --------------------------------------------------------


@dataclass
class CliServer:
    """A server for the CLI tests: its URL and admin key, the CLI environment of a key
    with read and use, and the id of the tenant's PostgreSQL connector ``orders``."""

    url: str
    admin_key: str
    env: dict[str, str]
    connector_id: str


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    """``connectord serve`` (SQLite) with a tenant ``acme`` and its connector ``orders``."""
    data = tmp_path_factory.mktemp("checkout-cli")
    with serve(data) as running:
        admin_env = {"CONNECTORD_URL": running.url, "CONNECTORD_API_KEY": running.admin_key}
        _ok(admin_env, "tenants", "create", "acme")
        writer = _ok(admin_env, "keys", "create", "--tenant", "acme", "--key-only")
        user = _ok(
            admin_env, "keys", "create", "--tenant", "acme", "--scope", "connectors:read",
            "--scope", "connectors:use", "--key-only",
        )  # fmt: skip
        with Client(running.url, writer) as client:
            info = client.register_connector("orders", "sql", PG_ENDPOINT, {"password": SECRET})
        env = {"CONNECTORD_URL": running.url, "CONNECTORD_API_KEY": user}
        yield CliServer(running.url, running.admin_key, env, info.id)
        assert SECRET not in running.log.read_text()


def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process with exactly these ``CONNECTORD_*`` variables (``run_cli`` would
    drop ``CONNECTORD_URL``): (exit code, stdout, stderr)."""
    done = CliRunner().invoke(cli_app, list(args), env={**dict.fromkeys(CLI_ENV), **env})
    return done.exit_code, done.stdout, done.stderr


def _ok(env: dict[str, str], *args: str) -> str:
    code, out, err = _cli(env, *args)
    assert code == 0, err
    return out.strip()


def test_cli_credentials_prints_json_env_and_dsn(cli_server: CliServer) -> None:
    env, connector_id = cli_server.env, cli_server.connector_id
    as_json = json.loads(_ok(env, "connectors", "credentials", "orders"))
    assert as_json["connector_id"] == connector_id
    assert as_json["config"]["password"] == SECRET

    dsn = _ok(env, "connectors", "credentials", "orders", "--format", "dsn")
    assert dsn == as_json["dsn"]
    assert asyncio.run(_select_one(dsn)) == 1

    lines = _ok(env, "connectors", "credentials", connector_id, "--format", "env").splitlines()
    assert all(line.startswith("export CONNECTOR_") for line in lines), lines
    # A POSIX shell reads every value back exactly, quotes and dollars included.
    script = (
        "\n".join(lines)
        + '\nprintf "%s\\n%s\\n%s" "$CONNECTOR_CONFIG_PASSWORD" "$CONNECTOR_DSN" "$CONNECTOR_TYPE"'
    )
    shown = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10, check=True)
    assert shown.stdout.split("\n") == [SECRET, dsn, "sql"]
    prefixed = _ok(env, "connectors", "credentials", "orders", "--format", "env", "--prefix", "ORDERS_")
    assert shlex.split(prefixed.splitlines()[0]) == ["export", "ORDERS_TYPE=sql"]


def test_cli_credentials_errors_are_clear(cli_server: CliServer) -> None:
    env = cli_server.env
    code, out, err = _cli(env, "connectors", "credentials", "nothing-here")
    assert code == 3, err
    assert out == ""
    code, out, err = _cli(env, "connectors", "credentials", "orders", "--format", "yaml")
    assert code == 2
    assert out == ""
    # A key without connectors:use (read, write, test): exit 5, and no secret printed.
    admin_env = {"CONNECTORD_URL": cli_server.url, "CONNECTORD_API_KEY": cli_server.admin_key}
    reader = _ok(admin_env, "keys", "create", "--tenant", "acme", "--key-only")
    no_use = {"CONNECTORD_URL": cli_server.url, "CONNECTORD_API_KEY": reader}
    code, out, err = _cli(no_use, "connectors", "credentials", cli_server.connector_id)
    assert code == 5
    assert "connectors:use" in err
    assert SECRET not in out + err


def test_cli_turns_checkout_off_on_a_server(cli_server: CliServer) -> None:
    admin_env = {"CONNECTORD_URL": cli_server.url, "CONNECTORD_API_KEY": cli_server.admin_key}
    shown = json.loads(_ok(admin_env, "tenants", "update", "acme", "--checkout", "off", "-o", "json"))
    try:
        assert shown["checkout_enabled"] is False
        code, out, err = _cli(cli_server.env, "connectors", "credentials", cli_server.connector_id)
        assert code == 5
        assert "turned off" in err
        assert out == ""
        # Tenant settings are the operator's: the tenant's own key cannot turn it back on.
        code, _, err = _cli(cli_server.env, "tenants", "update", "acme", "--checkout", "on")
        assert code == 5
    finally:
        _ok(admin_env, "tenants", "update", "acme", "--checkout", "on")
    assert _ok(cli_server.env, "connectors", "credentials", "orders", "--format", "dsn").startswith(
        "postgresql://"
    )


def test_cli_turns_checkout_off_on_the_local_store(tmp_path: Path) -> None:
    env = {"CONNECTORD_DATA_DIR": str(tmp_path / "data")}
    run_cli(env, "tenants", "create", "acme")
    run_cli(
        env, "connectors", "register", "orders", "--tenant", "acme", "--connector-type", "sql",
        "--endpoint", PG_ENDPOINT, "--config", json.dumps({"ssl_mode": "disable"}),
    )  # fmt: skip
    assert json.loads(run_cli(env, "connectors", "credentials", "orders", "--tenant", "acme"))["dsn"] == (
        PG_ENDPOINT + "?sslmode=disable"
    )
    shown = json.loads(run_cli(env, "tenants", "update", "acme", "--checkout", "off", "-o", "json"))
    assert shown["checkout_enabled"] is False
    listed = {t["name"]: t for t in json.loads(run_cli(env, "tenants", "list", "-o", "json"))}
    assert listed["acme"]["checkout_enabled"] is False
    code, out, err = _cli(env, "connectors", "credentials", "orders", "--tenant", "acme")
    assert code == 5
    assert "turned off" in err
    assert out == ""
    run_cli(env, "tenants", "update", "acme", "--checkout", "on")
    code, out, _ = _cli(env, "connectors", "credentials", "orders", "--tenant", "acme", "--format", "dsn")
    assert (code, out.strip()) == (0, PG_ENDPOINT + "?sslmode=disable")
