"""Narrowed API keys (``docs/use.md``): a key limited to some connectors, by ids or by a
metadata selector, sees, lists, tests and changes only those; every other id answers 404
exactly as another tenant's does.

Three levels, each on SQLite and PostgreSQL: the facade and the store (the reach
filters are SQL), the REST API of a real ``connectord serve`` (keys made through the
admin route), and the CLI's ``keys create --connector/--selector`` (on a local store
and against a server).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from connectord.admin import Admin
from connectord.cli import app as cli_app
from connectord.client import Client
from connectord.console.sessions import SESSION_COOKIE
from connectord.errors import NotFoundError, PermissionDeniedError, ValidationError
from connectord.facade import ConnectorsFacade
from connectord.model import WHOLE_TENANT, ConnectorInfo, Reach, Scope
from connectord.settings import Settings
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
from tests.cli_server import CLI_ENV, run_cli

C = "/api/v1/connectors"
T = "/api/v1/tenants"
PAYMENTS = {"team": "payments"}
USE_SCOPES = ("connectors:read", "connectors:write", "connectors:test", "connectors:use")


def _ids(items: list[ConnectorInfo]) -> set[str]:
    return {i.id for i in items}


def _name() -> str:
    return f"c-{secrets.token_hex(4)}"


async def _custom(
    facade: ConnectorsFacade, tenant: str, metadata: dict[str, Any] | None = None
) -> ConnectorInfo:
    return await facade.register_connector(tenant, _name(), "custom", "127.0.0.1:1", metadata=metadata)


# --- the facade and the store ------------------------------------------------------------


async def test_a_key_narrowed_by_ids_covers_only_those(
    facade: ConnectorsFacade, admin: Admin, tenant: str, other_tenant: str
) -> None:
    a, b, c = [await _custom(facade, tenant) for _ in range(3)]
    theirs = await _custom(facade, other_tenant)
    key = await admin.create_key(tenant, scopes=USE_SCOPES, connector_ids=[a.id, b.id])
    assert key.reach == Reach(frozenset({a.id, b.id}))
    reach = (await admin.authenticate(key.api_key)).reach
    assert reach == key.reach

    assert _ids(await facade.list_connectors(tenant, reach=reach)) == {a.id, b.id}
    page = await facade.list_connectors_page(tenant, limit=1, reach=reach)
    rest = await facade.list_connectors_page(tenant, limit=1, cursor=page.next_cursor, reach=reach)
    assert _ids(page.items) | _ids(rest.items) == {a.id, b.id}
    assert rest.next_cursor is None
    assert await facade.get_connector(a.id, tenant, reach=reach) == a

    # c is the tenant's, but outside the key: the same answers as another tenant's connector.
    for outside in (c.id, theirs.id):
        assert await facade.get_connector(outside, tenant, reach=reach) is None
        assert await facade.update_connector(outside, tenant, name=_name(), reach=reach) is None
        assert await facade.delete_connector(outside, tenant, reach=reach) is False
        for attempt in (
            facade.test_connector(outside, tenant, reach=reach),
            facade.history(outside, tenant, reach=reach),
            facade.health(outside, tenant, reach=reach),
            facade.secret_states(outside, tenant, reach=reach),
            facade.use_connector(outside, tenant, reach=reach, purpose="proxy"),
        ):
            with pytest.raises(NotFoundError):
                await attempt
    assert await facade.get_connector(c.id, tenant) == c  # untouched
    tested = [r.connector_id async for r in facade.test_connectors(tenant, reach=reach)]
    assert sorted(tested) == sorted([a.id, b.id])
    assert await facade.delete_connector(b.id, tenant, reach=reach) is True


async def test_a_selector_covers_connectors_whose_metadata_holds_each_pair(
    facade: ConnectorsFacade, admin: Admin, tenant: str
) -> None:
    pay = await _custom(facade, tenant, {"team": "payments", "tier": "gold"})
    pay_too = await _custom(facade, tenant, {"team": "payments"})
    search = await _custom(facade, tenant, {"team": "search"})
    # Not a string "payments": a list, a nested object, another case, the key elsewhere.
    odd = [
        await _custom(facade, tenant, {"team": ["payments"]}),
        await _custom(facade, tenant, {"team": {"name": "payments"}}),
        await _custom(facade, tenant, {"team": "Payments"}),
        await _custom(facade, tenant, {"owner": {"team": "payments"}}),
        await _custom(facade, tenant),
    ]
    one = Reach(selector=(("team", "payments"),))
    assert _ids(await facade.list_connectors(tenant, reach=one)) == {pay.id, pay_too.id}
    both = Reach(selector=(("team", "payments"), ("tier", "gold")))
    assert _ids(await facade.list_connectors(tenant, reach=both)) == {pay.id}
    # ids and a selector: either covers (the union).
    union = Reach(frozenset({search.id}), (("team", "payments"),))
    assert _ids(await facade.list_connectors(tenant, reach=union)) == {pay.id, pay_too.id, search.id}
    for info in odd:
        assert await facade.get_connector(info.id, tenant, reach=one) is None
    # A selector's values are text: the number 1 and true are not "1" and "true".
    text = await _custom(facade, tenant, {"n": "1", "on": "true"})
    await _custom(facade, tenant, {"n": 1, "on": True})
    typed = Reach(selector=(("n", "1"), ("on", "true")))
    assert _ids(await facade.list_connectors(tenant, reach=typed)) == {text.id}
    # The store counts what it lists (a bulk test's total).
    assert await facade.store.count_connectors(tenant, metadata=PAYMENTS) == 2
    assert await facade.store.count_connectors(tenant, ids=[search.id], metadata=PAYMENTS) == 3
    started = await facade.start_bulk_test(tenant, reach=one)
    assert started.total == 2


async def test_a_narrowed_key_keeps_what_it_writes_inside_its_reach(
    facade: ConnectorsFacade, admin: Admin, tenant: str
) -> None:
    by_selector = Reach(selector=(("team", "payments"),))
    made = await facade.register_connector(
        tenant, _name(), "custom", "127.0.0.1:1", metadata={"team": "payments"}, reach=by_selector
    )
    assert by_selector.covers(made)
    with pytest.raises(ValidationError) as refused:
        await facade.register_connector(
            tenant, _name(), "custom", "127.0.0.1:1", metadata={"team": "search"}, reach=by_selector
        )
    assert refused.value.errors[0].loc == ("metadata",)
    by_ids = Reach(frozenset({made.id}))
    with pytest.raises(PermissionDeniedError):
        await facade.register_connector(tenant, _name(), "custom", "127.0.0.1:1", reach=by_ids)
    # An update that would give the connector away is refused and changes nothing.
    with pytest.raises(ValidationError):
        await facade.update_connector(made.id, tenant, metadata={"team": "search"}, reach=by_selector)
    assert (await facade.get_connector(made.id, tenant)) == made
    changed = await facade.update_connector(
        made.id, tenant, metadata={"team": "payments", "x": "1"}, reach=by_selector
    )
    assert changed is not None
    assert changed.metadata == {"team": "payments", "x": "1"}


async def test_keys_made_without_a_reach_cover_the_whole_tenant(
    facade: ConnectorsFacade, admin: Admin, tenant: str, raw_sql: Any
) -> None:
    made = [await _custom(facade, tenant, {"team": "payments"}), await _custom(facade, tenant)]
    key = await admin.create_key(tenant, scopes=USE_SCOPES)
    principal = await admin.authenticate(key.api_key)
    assert principal.reach == WHOLE_TENANT
    assert not principal.reach.narrowed
    assert _ids(await facade.list_connectors(tenant, reach=principal.reach)) == _ids(made)
    # Stored as NULL in both columns, as every key made before narrowed keys existed.
    rows = await raw_sql("SELECT connector_ids, selector FROM api_keys WHERE id = ?", key.key_id)
    assert rows == [(None, None)]


async def test_a_narrowed_key_sees_the_events_and_audit_of_its_connectors(
    facade: ConnectorsFacade, tenant: str
) -> None:
    reach = Reach(selector=(("team", "payments"),))
    start = await facade.last_event_seq(tenant)
    pay = await _custom(facade, tenant, PAYMENTS)
    other = await _custom(facade, tenant, {"team": "search"})
    await facade.update_connector(other.id, tenant, name=_name())
    await facade.delete_connector(pay.id, tenant)  # its deletion still carries its metadata
    events = await facade.events_after(tenant, start, 100)
    assert {e.connector_id for e in events} == {pay.id, other.id}
    shown = await facade.covered_events(tenant, events, reach)
    assert [(e.type, e.connector_id) for e in shown] == [
        ("connector.created", pay.id),
        ("connector.deleted", pay.id),
    ]
    assert await facade.covered_events(tenant, events, WHOLE_TENANT) == events

    # The audit: one covered connector at a time; the tenant's whole log names others.
    kept = await _custom(facade, tenant, PAYMENTS)
    with pytest.raises(PermissionDeniedError):
        await facade.audit(tenant, reach=reach)
    assert [e.action for e in (await facade.audit(tenant, connector_id=kept.id, reach=reach)).items] == [
        "connector.create"
    ]
    assert (await facade.audit(tenant, connector_id=other.id, reach=reach)).items == []


@pytest.mark.parametrize(
    ("ids", "selector", "loc"),
    [
        (None, {}, ("selector",)),
        (None, {"": "payments"}, ("selector", "")),
        (None, {"team=x": "payments"}, ("selector", "team=x")),
        (None, {"team": ""}, ("selector", "team")),
        (None, {"team": 7}, ("selector", "team")),
        (None, {"team": "pay\nments"}, ("selector", "team")),
        (None, {"team": "p" * 201}, ("selector", "team")),
        (None, {f"k{i}": "v" for i in range(17)}, ("selector",)),
        ([], None, ("connector_ids",)),
        (["not-an-id"], None, ("connector_ids", 0)),
        ([str(uuid.uuid4())], None, ("connector_ids",)),
    ],
)
async def test_a_bad_reach_is_refused_with_the_field(
    admin: Admin, tenant: str, ids: list[str] | None, selector: dict[str, Any] | None, loc: tuple[Any, ...]
) -> None:
    before = await admin.list_keys(tenant)
    with pytest.raises(ValidationError) as refused:
        await admin.create_key(tenant, scopes=USE_SCOPES, connector_ids=ids, selector=selector)
    assert refused.value.errors[0].loc == loc, refused.value.errors
    assert await admin.list_keys(tenant) == before


async def test_another_tenants_connector_id_cannot_be_given_to_a_key(
    facade: ConnectorsFacade, admin: Admin, tenant: str, other_tenant: str
) -> None:
    theirs = await _custom(facade, other_tenant)
    with pytest.raises(ValidationError) as refused:
        await admin.create_key(tenant, scopes=USE_SCOPES, connector_ids=[theirs.id])
    assert theirs.id in refused.value.errors[0].msg
    with pytest.raises(ValidationError):
        await admin.create_key(tenant, scopes=(Scope.ADMIN,), selector=PAYMENTS)


# --- the REST API --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on each backend, shared by this module's API tests."""
    backend = str(request.param)
    with run_server(backend, tmp_path_factory.mktemp(f"reach-{backend}"), request) as running:
        yield running


def _narrowed_key(server: Server, tenant: Tenant, **reach: Any) -> dict[str, Any]:
    body = {"name": "narrow", "scopes": list(USE_SCOPES), **reach}
    response = server.admin().post(f"{T}/{tenant.id}/keys", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def test_a_narrowed_key_over_rest_answers_404_as_for_another_tenant(server: Server) -> None:
    tenant, other = create_tenant(server, "n"), create_tenant(server, "o")
    pay = register(tenant.http, _name(), metadata=PAYMENTS)
    listed = register(tenant.http, _name())
    hidden = register(tenant.http, _name(), metadata={"team": "search"})
    theirs = register(other.http, _name(), metadata=PAYMENTS)
    made = _narrowed_key(server, tenant, connector_ids=[listed["id"]], selector=PAYMENTS)
    assert made["connector_ids"] == [listed["id"]]
    assert made["selector"] == PAYMENTS
    narrow = server.client(made["api_key"])

    items = narrow.get(C).json()["items"]
    assert {i["id"] for i in items} == {pay["id"], listed["id"]}
    assert narrow.get(C, params={"limit": 1}).json()["next_cursor"] is not None
    assert narrow.get(f"{C}/{pay['id']}").json()["id"] == pay["id"]
    assert narrow.post(f"{C}/{listed['id']}/test").json()["success"] is False  # nothing listens on :1

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "", {}),
        ("PUT", "", {"json": {"name": _name()}}),
        ("DELETE", "", {}),
        ("POST", "/test", {}),
        ("GET", "/history", {}),
        ("GET", "/health", {}),
        ("GET", "/secrets", {}),
        ("POST", "/credentials", {}),
    ]
    stranger = server.client(create_key(server, other, list(USE_SCOPES)))
    for method, suffix, kwargs in attempts:
        # The tenant's own connector outside the key, another tenant's connector with this key,
        # and this tenant's connector with another tenant's key: one and the same answer.
        answers = [
            narrow.request(method, f"{C}/{hidden['id']}{suffix}", **kwargs),
            narrow.request(method, f"{C}/{theirs['id']}{suffix}", **kwargs),
            stranger.request(method, f"{C}/{pay['id']}{suffix}", **kwargs),
        ]
        bodies = [_without_request_id(assert_problem(a, 404, "not-found")) for a in answers]
        assert bodies[0] == bodies[1] == bodies[2], suffix
    assert tenant.http.get(f"{C}/{hidden['id']}").json()["name"] == hidden["name"]  # untouched


def test_a_narrowed_key_writes_and_bulk_tests_only_inside_its_reach(server: Server) -> None:
    tenant = create_tenant(server, "w")
    pay = register(tenant.http, _name(), metadata=PAYMENTS)
    register(tenant.http, _name())
    narrow = server.client(_narrowed_key(server, tenant, selector=PAYMENTS)["api_key"])

    made = narrow.post(C, json={"name": _name(), "connector_type": "custom", "metadata": PAYMENTS})
    assert made.status_code == 201, made.text
    refused = narrow.post(C, json={"name": _name(), "connector_type": "custom"})
    problem = assert_problem(refused, 422, "validation")
    assert problem["errors"][0]["loc"] == ["metadata"]
    away = narrow.put(f"{C}/{pay['id']}", json={"metadata": {"team": "search"}})
    assert_problem(away, 422, "validation")
    assert narrow.get(f"{C}/{pay['id']}").json()["metadata"] == PAYMENTS

    started = narrow.post(f"{C}/bulk-test")
    assert started.status_code == 202, started.text
    assert started.json()["total"] == 2  # of the tenant's 3 connectors
    assert len(tenant.http.get(C).json()["items"]) == 3
    location = started.headers["location"]
    assert narrow.get(location).status_code == 200
    assert tenant.http.get(location).status_code == 200  # the whole tenant's key reads it too
    # A key of another reach does not: the summary names connectors it may not cover.
    elsewhere = server.client(_narrowed_key(server, tenant, selector={"team": "search"})["api_key"])
    assert_problem(elsewhere.get(location), 404, "not-found")


def test_a_narrowed_key_is_refused_on_tenant_wide_routes(server: Server) -> None:
    tenant = create_tenant(server, "h")
    register(tenant.http, _name(), metadata=PAYMENTS)
    narrow = server.client(_narrowed_key(server, tenant, selector=PAYMENTS)["api_key"])
    for method, path, body in [
        ("GET", "/api/v1/webhooks", None),
        ("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}),
        ("GET", f"/api/v1/webhooks/{uuid.uuid4()}", None),
    ]:
        problem = assert_problem(narrow.request(method, path, json=body), 403, "forbidden")
        assert "narrowed" in problem["detail"]
    # The tenant's whole-tenant key still manages webhooks.
    assert tenant.http.get("/api/v1/webhooks").status_code == 200


def test_the_admin_route_validates_a_reach_and_lists_it(server: Server) -> None:
    tenant = create_tenant(server, "v")
    known = register(tenant.http, _name())
    admin = server.admin()
    for body, loc in [
        ({"selector": {"team": 1}}, ["body", "selector", "team"]),
        ({"selector": {}}, ["body", "selector"]),
        ({"selector": "team=payments"}, ["body", "selector"]),
        ({"selector": {"team=x": "y"}}, ["selector", "team=x"]),
        ({"connector_ids": []}, ["body", "connector_ids"]),
        ({"connector_ids": [str(uuid.uuid4())]}, ["connector_ids"]),
        ({"scopes": ["admin"], "selector": PAYMENTS}, ["scopes"]),
    ]:
        problem = assert_problem(admin.post(f"{T}/{tenant.id}/keys", json=body), 422, "validation")
        assert problem["errors"][0]["loc"] == loc, problem
    made = _narrowed_key(server, tenant, connector_ids=[known["id"]])
    keys = {k["id"]: k for k in admin.get(f"{T}/{tenant.id}/keys").json()["items"]}
    assert keys[made["key_id"]]["connector_ids"] == [known["id"]]
    assert keys[made["key_id"]]["selector"] is None
    assert keys[tenant.key_id]["connector_ids"] is None
    assert keys[tenant.key_id]["selector"] is None
    audit = tenant.http.get("/api/v1/audit", params={"limit": 100}).json()["items"]
    created = next(
        e for e in audit if e["action"] == "key.create" and e["details"]["key_id"] == made["key_id"]
    )
    assert created["details"]["reach"] == {"connector_ids": [known["id"]], "selector": None}
    assert made["api_key"] not in json.dumps(audit)


def _console_sign_in(server: Server, api_key: str) -> httpx.Response:
    """Sign in to the web console as a browser would: the form (its CSRF cookie and
    token), then the POST; the answer, redirects not followed."""
    browser = httpx.Client(base_url=server.base_url, timeout=30)
    form = browser.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    answer = browser.post(
        "/sign-in", data={"csrf_token": token.group(1), "api_key": api_key, "next": "/connectors"}
    )
    browser.close()
    return answer


def test_a_narrowed_key_cannot_sign_in_to_the_console(server: Server) -> None:
    tenant = create_tenant(server, "ui")
    register(tenant.http, _name(), metadata=PAYMENTS)
    narrowed = _console_sign_in(server, _narrowed_key(server, tenant, selector=PAYMENTS)["api_key"])
    assert narrowed.status_code == 403
    assert "narrowed to some connectors" in narrowed.text
    assert SESSION_COOKIE not in narrowed.headers.get("set-cookie", "")
    whole = _console_sign_in(server, tenant.key)
    assert whole.status_code == 303
    assert SESSION_COOKIE in whole.headers["set-cookie"]
    assert whole.headers["location"] == "/connectors"


# --- the CLI ------------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process with exactly these ``CONNECTORD_*`` variables: (exit code, stdout, stderr)."""
    done = CliRunner().invoke(cli_app, list(args), env={**dict.fromkeys(CLI_ENV), **env})
    return done.exit_code, done.stdout, done.stderr


def _register(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = run_cli(
        env,
        "connectors",
        "register",
        _name(),
        "--tenant",
        "acme",
        "--connector-type",
        "custom",
        "-o",
        "json",
        *args,
    )
    made: dict[str, Any] = json.loads(out)
    return made


def test_cli_keys_create_narrows_a_key_on_the_local_store(tmp_path: Path) -> None:
    env = {"CONNECTORD_DATA_DIR": str(tmp_path / "data")}
    run_cli(env, "tenants", "create", "acme")
    orders = _register(env, "--endpoint", "127.0.0.1:1")
    pay = _register(env, "--endpoint", "127.0.0.1:1", "--metadata", json.dumps(PAYMENTS))
    made = json.loads(
        run_cli(
            env,
            "keys", "create", "--tenant", "acme", "--scope", "connectors:use", "--scope", "connectors:read",
            "--connector", orders["id"], "--selector", "team=payments",
        )
    )  # fmt: skip
    assert made["scopes"] == ["connectors:use", "connectors:read"]
    assert made["connector_ids"] == [orders["id"]]
    assert made["selector"] == PAYMENTS
    listed = {k["id"]: k for k in json.loads(run_cli(env, "keys", "list", "--tenant", "acme", "-o", "json"))}
    assert listed[made["key_id"]]["selector"] == PAYMENTS
    assert listed[made["key_id"]]["connector_ids"] == [orders["id"]]
    assert "team=payments" in run_cli(env, "keys", "list", "--tenant", "acme")
    # The key sees what it covers, in the local store too.
    narrow = asyncio.run(_narrowed_ids(tmp_path / "data", made["api_key"]))
    assert narrow == {orders["id"], pay["id"]}


async def _narrowed_ids(data_dir: Path, api_key: str) -> set[str]:
    async with ConnectorsFacade(settings=Settings(data_dir=data_dir)) as facade:
        principal = await Admin(facade).authenticate(api_key)
        return _ids(await facade.list_connectors(principal.tenant_id, reach=principal.reach))


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("team", "is not KEY=VALUE"),
        ("=payments", "is not KEY=VALUE"),
        ("team=", "is not KEY=VALUE"),
    ],
)
def test_cli_refuses_a_bad_selector_before_any_work(tmp_path: Path, flag: str, message: str) -> None:
    env = {"CONNECTORD_DATA_DIR": str(tmp_path / "data")}
    code, out, err = _cli(env, "keys", "create", "--scope", "connectors:use", "--selector", flag)
    assert code == 2, (out, err)
    assert message in err
    assert "--selector" in err
    assert out == ""
    assert not (tmp_path / "data").exists()  # refused before the store was opened


def test_cli_keys_create_against_a_server(server: Server) -> None:
    tenant = create_tenant(server, "cli")
    pay = register(tenant.http, _name(), metadata=PAYMENTS)
    other = register(tenant.http, _name())
    env = {"CONNECTORD_URL": server.base_url, "CONNECTORD_API_KEY": server.admin_key}
    done = CliRunner().invoke(
        cli_app,
        [
            "keys",
            "create",
            "--tenant",
            tenant.name,
            "--scope",
            "connectors:read",
            "--selector",
            "team=payments",
        ],
        env={**dict.fromkeys(CLI_ENV), **env},
    )
    assert done.exit_code == 0, done.output
    made = json.loads(done.stdout)
    assert made["selector"] == PAYMENTS
    narrow = server.client(made["api_key"])
    assert [i["id"] for i in narrow.get(C).json()["items"]] == [pay["id"]]
    assert_problem(narrow.get(f"{C}/{other['id']}"), 404, "not-found")
    with Client(server.base_url, server.admin_key) as sdk:
        listed = {k.id: k for k in sdk.list_keys(tenant.id)}
        assert listed[made["key_id"]].reach == Reach(selector=(("team", "payments"),))
        assert listed[tenant.key_id].reach == WHOLE_TENANT
        by_ids = sdk.create_key(tenant.id, "ids", ["connectors:read"], connector_ids=[other["id"]])
        assert by_ids.reach == Reach(frozenset({other["id"]}))
    # The server's check: a selector key too long for it is a usage error (exit 2), said clearly.
    code, _, err = _cli(env, "keys", "create", "--tenant", tenant.name, "--selector", "k" * 201 + "=v")
    assert code == 2
    assert "selector" in err
    code, _, err = _cli(env, "keys", "create", "--tenant", tenant.name, "--connector", str(uuid.uuid4()))
    assert code == 2
    assert "no connector with id" in err
