"""``GET /connectors/{id}/secrets`` and ``POST /connectors/{id}/secrets/fingerprints`` on a real
server (SQLite and PostgreSQL): fingerprints and references, never a value; scopes; tenants."""

from __future__ import annotations

from collections.abc import Callable

from tests.api.conftest import Server, Tenant, assert_problem, create_key, register

PASSWORD = "rest-Fingerprint-Secret-9"


def test_fingerprints_and_references_are_answered_never_values(
    server: Server, api_tenant: Tenant, unique: Callable[[str], str]
) -> None:
    http = api_tenant.http
    made = register(http, unique("fp"), config={"password": PASSWORD, "tls": False})
    answer = http.get(f"/api/v1/connectors/{made['id']}/secrets")
    assert answer.status_code == 200, answer.text
    state = answer.json()["secrets"]["password"]
    assert state["fingerprint"].startswith("hmac-sha256:")
    assert state["reference"] is None
    asked = http.post(
        f"/api/v1/connectors/{made['id']}/secrets/fingerprints",
        json={"values": {"password": PASSWORD}},
    )
    assert asked.status_code == 200, asked.text
    assert asked.json() == {"fingerprints": {"password": state["fingerprint"]}}
    other = http.post(
        f"/api/v1/connectors/{made['id']}/secrets/fingerprints", json={"values": {"password": "guess"}}
    )
    assert other.json()["fingerprints"]["password"] != state["fingerprint"]
    audit = http.get("/api/v1/audit").text
    assert "connector.secrets.fingerprint" in audit
    for text in (answer.text, asked.text, audit, server.log_text()):
        assert PASSWORD not in text
    assert "guess" not in audit  # the fields are audited, not the values


def test_reading_needs_read_and_fingerprinting_needs_write(
    server: Server, api_tenant: Tenant, unique: Callable[[str], str]
) -> None:
    made = register(api_tenant.http, unique("fp"), config={"password": PASSWORD})
    reader = server.client(create_key(server, api_tenant, ["connectors:read"]))
    assert reader.get(f"/api/v1/connectors/{made['id']}/secrets").status_code == 200
    refused = reader.post(
        f"/api/v1/connectors/{made['id']}/secrets/fingerprints", json={"values": {"password": "x"}}
    )
    assert_problem(refused, 403)


def test_another_tenants_connector_is_not_found(
    api_tenant: Tenant, other_api_tenant: Tenant, unique: Callable[[str], str]
) -> None:
    made = register(api_tenant.http, unique("fp"), config={"password": PASSWORD})
    other = other_api_tenant.http
    assert_problem(other.get(f"/api/v1/connectors/{made['id']}/secrets"), 404)
    asked = other.post(
        f"/api/v1/connectors/{made['id']}/secrets/fingerprints", json={"values": {"password": "x"}}
    )
    assert_problem(asked, 404)


def test_bad_bodies_are_precise_problems(api_tenant: Tenant, unique: Callable[[str], str]) -> None:
    made = register(api_tenant.http, unique("fp"), config={"password": PASSWORD})
    url = f"/api/v1/connectors/{made['id']}/secrets/fingerprints"
    for body in (
        {},
        {"values": {"password": 1}},
        {"values": [1]},
        {"values": {}, "extra": 1},
        {"values": {f"f{i}": "x" for i in range(65)}},
    ):
        assert_problem(api_tenant.http.post(url, json=body), 422)
