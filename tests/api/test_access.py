"""Authentication, scopes, tenant isolation on every route, and the admin routes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import Server, Tenant, assert_problem, create_key, create_tenant, register

Names = Callable[[str], str]
C = "/api/v1/connectors"
T = "/api/v1/tenants"

#: (method, path template, scope it needs, JSON body). ``{c}`` is a connector id,
#: ``{t}`` a tenant id, ``{k}`` a key id.
OPERATIONS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("GET", C, "connectors:read", None),
    ("POST", C, "connectors:write", {"name": "new-one", "connector_type": "custom"}),
    ("POST", f"{C}/test", "connectors:test", {"name": "probe", "connector_type": "custom"}),
    ("GET", f"{C}/{{c}}", "connectors:read", None),
    ("PUT", f"{C}/{{c}}", "connectors:write", {"metadata": {"x": 1}}),
    ("DELETE", f"{C}/{{c}}", "connectors:write", None),
    ("POST", f"{C}/{{c}}/test", "connectors:test", None),
    ("GET", f"{C}/{{c}}/history", "connectors:read", None),
    ("GET", f"{C}/{{c}}/health", "connectors:read", None),
    ("GET", f"{C}/{{c}}/secrets", "connectors:read", None),
    ("POST", f"{C}/{{c}}/credentials", "connectors:use", None),
    ("GET", "/api/v1/connector-types", "connectors:read", None),
    ("GET", "/api/v1/audit", "connectors:read", None),
    ("GET", T, "admin", None),
    ("POST", T, "admin", {"name": "placeholder"}),
    ("GET", f"{T}/{{t}}/keys", "admin", None),
    ("POST", f"{T}/{{t}}/keys", "admin", {"scopes": ["connectors:read"]}),
    ("DELETE", f"{T}/{{t}}/keys/{{k}}", "admin", None),
    ("PUT", f"{T}/{{t}}", "admin", {"checkout_enabled": True}),
]


def _call(http: httpx.Client, op: tuple[str, str, str, dict[str, Any] | None], **ids: str) -> httpx.Response:
    method, template, _, body = op
    if body is not None and "name" in body:
        body = {**body, "name": f"{body['name']}-{uuid.uuid4().hex[:8]}"}
    return http.request(method, template.format(**ids), json=body)


def _ids(tenant: Tenant) -> dict[str, str]:
    return {"c": register(tenant.http, f"x-{uuid.uuid4().hex[:8]}")["id"], "t": tenant.id, "k": tenant.key_id}


@pytest.mark.parametrize(
    "authorization", [None, "Bearer cdk_not-a-key", "Bearer", "Basic dXNlcjpwYXNz", "cdk_no-scheme"]
)
def test_every_protected_route_needs_a_valid_key(
    server: Server, api_tenant: Tenant, authorization: str | None
) -> None:
    ids = _ids(api_tenant)
    headers = {"Authorization": authorization} if authorization is not None else {}
    http = server.client(headers=headers)
    for op in OPERATIONS:
        response = _call(http, op, **ids)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer"), op
    assert api_tenant.http.get(f"{C}/{ids['c']}").status_code == 200  # nothing was changed


def test_a_revoked_key_gets_401(server: Server, api_tenant: Tenant) -> None:
    key = create_key(server, api_tenant, ["connectors:read"])
    http = server.client(key)
    assert http.get(C).status_code == 200
    keys = server.admin().get(f"{T}/{api_tenant.id}/keys").json()["items"]
    key_id = next(k["id"] for k in keys if k["name"] == "extra")
    assert server.admin().delete(f"{T}/{api_tenant.id}/keys/{key_id}").status_code == 204
    response = http.get(C)
    assert_problem(response, 401, "unauthorized")
    assert "www-authenticate" in response.headers
    assert api_tenant.http.get(C).status_code == 200  # the tenant's other key still works


@pytest.mark.parametrize("scope", ["connectors:read", "connectors:write", "connectors:test"])
def test_each_route_needs_its_scope(server: Server, api_tenant: Tenant, scope: str) -> None:
    http = server.client(create_key(server, api_tenant, [scope]))
    for op in OPERATIONS:
        ids = _ids(api_tenant)
        response = _call(http, op, **ids)
        if op[2] == scope:
            assert response.status_code < 400, (op, response.text)
        else:
            body = assert_problem(response, 403, "forbidden")
            assert op[2] in body["detail"], op


def test_a_read_only_key_changes_nothing(server: Server, api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("r"))
    reader = server.client(create_key(server, api_tenant, ["connectors:read"]))
    url = f"{C}/{created['id']}"
    assert_problem(reader.post(C, json={"name": unique("r"), "connector_type": "custom"}), 403)
    assert_problem(reader.put(url, json={"name": unique("r")}), 403)
    assert_problem(reader.delete(url), 403)
    assert_problem(reader.post(f"{url}/test"), 403)
    assert_problem(reader.post(f"{C}/test", json={"name": "x", "connector_type": "custom"}), 403)
    assert reader.get(url).json() == created
    assert [i["id"] for i in reader.get(C).json()["items"]] == [created["id"]]
    assert reader.get(f"{url}/history").json()["items"] == []


def test_another_tenant_gets_404_for_every_route(
    api_tenant: Tenant, other_api_tenant: Tenant, unique: Names, closed_port: int
) -> None:
    mine = register(api_tenant.http, unique("mine"), endpoint=f"127.0.0.1:{closed_port}")
    url = f"{C}/{mine['id']}"
    assert api_tenant.http.post(f"{url}/test").status_code == 200
    thief = other_api_tenant.http
    nowhere = str(uuid.uuid4())

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "", {}),
        ("PUT", "", {"json": {"name": unique("stolen")}}),
        ("PUT", "", {"json": {"status": "disconnected"}, "headers": {"If-Match": '"2"'}}),
        ("DELETE", "", {}),
        ("DELETE", "", {"headers": {"If-Match": '"2"'}}),
        ("POST", "/test", {}),
        ("GET", "/history", {}),
        ("GET", "/health", {}),
    ]
    for method, suffix, kwargs in attempts:
        body = assert_problem(thief.request(method, f"{url}{suffix}", **kwargs), 404, "not-found")
        # The same answer as for an id that exists nowhere: ids cannot be probed.
        absent = thief.request(method, f"{C}/{nowhere}{suffix}", **kwargs)
        assert {k: v for k, v in body.items() if k != "request_id"} == {
            k: v for k, v in absent.json().items() if k != "request_id"
        }

    assert thief.get(C).json()["items"] == []
    assert thief.get(C, params={"connector_type": "custom"}).json()["items"] == []
    assert thief.get("/api/v1/audit", params={"connector_id": mine["id"]}).json()["items"] == []
    thief_events = thief.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    assert all(e["tenant_id"] == other_api_tenant.id for e in thief_events)
    assert mine["id"] not in str(thief_events)

    after = api_tenant.http.get(url).json()
    assert after["name"] == mine["name"]
    assert after["status"] == "error"
    assert len(api_tenant.http.get(f"{url}/history").json()["items"]) == 1
    owner_events = api_tenant.http.get("/api/v1/audit", params={"connector_id": mine["id"]}).json()
    assert [e["action"] for e in owner_events["items"]] == ["connector.test", "connector.create"]


def test_names_and_idempotency_keys_are_per_tenant(
    api_tenant: Tenant, other_api_tenant: Tenant, unique: Names
) -> None:
    body = {"name": unique("same"), "connector_type": "custom"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api_tenant.http.post(C, json=body, headers=key)
    second = other_api_tenant.http.post(C, json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["tenant_id"] == other_api_tenant.id


def test_tenant_routes_need_the_admin_scope(server: Server, api_tenant: Tenant) -> None:
    for method, path in [
        ("GET", T),
        ("POST", T),
        ("GET", f"{T}/{api_tenant.id}/keys"),
        ("POST", f"{T}/{api_tenant.id}/keys"),
        ("DELETE", f"{T}/{api_tenant.id}/keys/{api_tenant.key_id}"),
    ]:
        body = {"name": "sneaky"} if method == "POST" else None
        response = api_tenant.http.request(method, path, json=body)
        assert_problem(response, 403, "forbidden")
    assert api_tenant.http.get(C).status_code == 200  # its own key was not revoked


def test_admin_manages_tenants_and_keys(server: Server) -> None:
    admin = server.admin()
    tenant = create_tenant(server, "adm")
    assert tenant.key.startswith("cdk_")
    listed = admin.get(T).json()["items"]
    assert {"id": tenant.id, "name": tenant.name} in [{"id": t["id"], "name": t["name"]} for t in listed]
    assert_problem(admin.post(T, json={"name": tenant.name}), 409, "duplicate-name")
    assert_problem(admin.post(T, json={"name": "bad\nname"}), 422, "validation")

    created = admin.post(f"{T}/{tenant.id}/keys", json={"name": "ci", "scopes": ["connectors:read"]})
    assert created.status_code == 201
    new_key = created.json()
    assert new_key["tenant_id"] == tenant.id
    assert new_key["scopes"] == ["connectors:read"]
    assert_problem(admin.post(f"{T}/{tenant.id}/keys", json={"scopes": ["root"]}), 422, "validation")
    assert_problem(admin.post(f"{T}/{uuid.uuid4()}/keys", json={}), 404, "not-found")
    assert_problem(admin.get(f"{T}/{uuid.uuid4()}/keys"), 404, "not-found")

    keys = admin.get(f"{T}/{tenant.id}/keys")
    assert keys.status_code == 200
    by_name = {k["name"]: k for k in keys.json()["items"]}
    assert set(by_name) == {"initial", "ci"}
    assert by_name["ci"]["scopes"] == ["connectors:read"]
    assert by_name["ci"]["revoked_at"] is None
    assert tenant.key not in keys.text
    assert new_key["api_key"] not in keys.text

    other = create_tenant(server, "adm")
    # A key id is only found within its own tenant.
    assert_problem(admin.delete(f"{T}/{other.id}/keys/{new_key['key_id']}"), 404, "not-found")
    assert admin.delete(f"{T}/{tenant.id}/keys/{new_key['key_id']}").status_code == 204
    assert_problem(admin.delete(f"{T}/{tenant.id}/keys/{new_key['key_id']}"), 404, "not-found")
    revoked = {k["name"]: k for k in admin.get(f"{T}/{tenant.id}/keys").json()["items"]}["ci"]
    assert revoked["revoked_at"] is not None
    assert_problem(server.client(new_key["api_key"]).get(C), 401)
    assert tenant.http.get(C).status_code == 200
