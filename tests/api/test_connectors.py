"""``/api/v1/connectors``: every route's success and error codes, ETags, idempotency, tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from .conftest import Server, Tenant, assert_problem, register

Names = Callable[[str], str]
C = "/api/v1/connectors"


def test_register_answers_201_with_location_and_etag(api_tenant: Tenant, unique: Names) -> None:
    name = unique("c")
    body = {
        "name": name,
        "connector_type": "custom",
        "endpoint": "127.0.0.1:9",
        "config": {"capabilities": ["read", "write"], "timeout": 3},
        "metadata": {"team": "data", "tier": 2},
    }
    response = api_tenant.http.post(C, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{C}/{created['id']}"
    assert response.headers["etag"] == '"1"'
    assert created["name"] == name
    assert created["connector_type"] == "custom"
    assert created["status"] == "registered"
    assert created["capabilities"] == ["read", "write"]
    assert created["endpoint"] == "127.0.0.1:9"
    assert created["tenant_id"] == api_tenant.id
    assert created["config"] == {"capabilities": ["read", "write"], "timeout": 3}
    assert created["metadata"] == {"team": "data", "tier": 2}
    assert created["secret_fields"] == []
    assert created["version"] == 1
    assert created["updated_at"] is None
    assert created["last_used_at"] is None

    fetched = api_tenant.http.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.headers["etag"] == '"1"'
    assert fetched.json() == created


def test_register_refuses_a_duplicate_name(api_tenant: Tenant, unique: Names) -> None:
    name = unique("dup")
    register(api_tenant.http, name)
    response = api_tenant.http.post(C, json={"name": name, "connector_type": "custom"})
    assert_problem(response, 409, "duplicate-name")
    assert len(api_tenant.http.get(C).json()["items"]) == 1


def test_register_refuses_an_unknown_type_and_a_bad_config(api_tenant: Tenant, unique: Names) -> None:
    response = api_tenant.http.post(C, json={"name": unique("c"), "connector_type": "teleport"})
    body = assert_problem(response, 422, "unknown-connector-type")
    assert body["errors"][0]["loc"] == ["connector_type"]
    assert "custom" in body["detail"]

    response = api_tenant.http.post(
        C, json={"name": unique("c"), "connector_type": "custom", "config": {"capabilities": ["fly"]}}
    )
    body = assert_problem(response, 422, "validation")
    assert [e["loc"][:2] for e in body["errors"]] == [["config", "capabilities"]]

    response = api_tenant.http.post(
        C, json={"name": unique("c"), "connector_type": "custom", "config": {"no_such_option": 1}}
    )
    body = assert_problem(response, 422, "validation")
    assert body["errors"][0]["loc"] == ["config", "no_such_option"]

    response = api_tenant.http.post(C, json={"name": " leading space", "connector_type": "custom"})
    assert assert_problem(response, 422, "validation")["errors"][0]["loc"] == ["name"]
    assert api_tenant.http.get(C).json()["items"] == []


def test_get_of_an_unknown_id_is_404(api_tenant: Tenant) -> None:
    for connector_id in (str(uuid.uuid4()), "not-a-uuid"):
        assert_problem(api_tenant.http.get(f"{C}/{connector_id}"), 404, "not-found")


def test_list_filters_by_type_and_status(api_tenant: Tenant, unique: Names) -> None:
    a = register(api_tenant.http, unique("a"))
    b = register(api_tenant.http, unique("b"))
    h = register(api_tenant.http, unique("h"), connector_type="http", endpoint="http://127.0.0.1:1/")
    paused = api_tenant.http.put(f"{C}/{b['id']}", json={"status": "disconnected"})
    assert paused.status_code == 200

    def ids(**params: str) -> list[str]:
        response = api_tenant.http.get(C, params=params)
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [a["id"], b["id"], h["id"]]
    assert ids(connector_type="custom") == [a["id"], b["id"]]
    assert ids(connector_type="http") == [h["id"]]
    assert ids(status="disconnected") == [b["id"]]
    assert ids(status="registered") == [a["id"], h["id"]]
    assert ids(connector_type="http", status="disconnected") == []
    assert ids(connector_type="vector") == []
    assert_problem(api_tenant.http.get(C, params={"status": "sleeping"}), 422, "validation")


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "ten", "1.5"])
def test_list_refuses_a_limit_out_of_bounds(api_tenant: Tenant, limit: str) -> None:
    body = assert_problem(api_tenant.http.get(C, params={"limit": limit}), 422, "validation")
    assert body["errors"][0]["loc"] == ["query", "limit"]


def test_list_accepts_the_limit_bounds(api_tenant: Tenant, unique: Names) -> None:
    register(api_tenant.http, unique("c"))
    register(api_tenant.http, unique("c"))
    assert len(api_tenant.http.get(C, params={"limit": 1000}).json()["items"]) == 2
    page = api_tenant.http.get(C, params={"limit": 1}).json()
    assert len(page["items"]) == 1
    assert page["next_cursor"]


def test_list_pages_with_a_cursor(api_tenant: Tenant, unique: Names) -> None:
    created = [register(api_tenant.http, unique("p"))["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api_tenant.http.get(C, params=params).json()
        pages += 1
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "the cursor never ends"
    assert pages == 3
    assert seen == created
    assert_problem(api_tenant.http.get(C, params={"cursor": "not-a-cursor"}), 422, "validation")


def test_list_pages_with_an_offset(api_tenant: Tenant, unique: Names) -> None:
    created = [register(api_tenant.http, unique("o"))["id"] for _ in range(5)]
    page = api_tenant.http.get(C, params={"offset": 2, "limit": 2}).json()
    assert [item["id"] for item in page["items"]] == created[2:4]
    assert page["next_cursor"] is not None
    assert api_tenant.http.get(C, params={"offset": 5}).json() == {"items": [], "next_cursor": None}
    assert_problem(api_tenant.http.get(C, params={"offset": -1}), 422, "validation")


def test_list_ignores_unknown_query_parameters(api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("c"))
    response = api_tenant.http.get(C, params={"colour": "blue", "tenant_id": "someone-else"})
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [created["id"]]


def test_update_changes_the_fields_given(api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("u"), metadata={"a": 1})
    new_name = unique("renamed")
    response = api_tenant.http.put(f"{C}/{created['id']}", json={"name": new_name, "metadata": {"b": 2}})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert response.headers["etag"] == '"2"'
    assert updated["name"] == new_name
    assert updated["metadata"] == {"b": 2}
    assert updated["endpoint"] == created["endpoint"]
    assert updated["version"] == 2
    assert updated["updated_at"] is not None
    assert api_tenant.http.get(f"{C}/{created['id']}").json() == updated

    response = api_tenant.http.put(f"{C}/{created['id']}", json={"endpoint": None})
    assert response.status_code == 200
    assert response.json()["endpoint"] is None

    response = api_tenant.http.put(f"{C}/{created['id']}", json={"config": {"capabilities": ["query"]}})
    assert response.json()["capabilities"] == ["query"]
    assert response.json()["version"] == 4


def test_update_refuses_a_taken_name_and_a_bad_config(api_tenant: Tenant, unique: Names) -> None:
    first = register(api_tenant.http, unique("u"))
    second = register(api_tenant.http, unique("u"))
    response = api_tenant.http.put(f"{C}/{second['id']}", json={"name": first["name"]})
    assert_problem(response, 409, "duplicate-name")
    response = api_tenant.http.put(f"{C}/{second['id']}", json={"config": {"tls": "sometimes"}})
    assert assert_problem(response, 422, "validation")["errors"][0]["loc"][:2] == ["config", "tls"]
    assert api_tenant.http.get(f"{C}/{second['id']}").json()["version"] == 1


def test_update_of_an_unknown_id_is_404(api_tenant: Tenant) -> None:
    response = api_tenant.http.put(f"{C}/{uuid.uuid4()}", json={"name": "x"})
    assert_problem(response, 404, "not-found")


def test_status_changes_allowed_and_refused(api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("s"))
    url = f"{C}/{created['id']}"
    for refused in ("connected", "error"):  # set by tests only
        assert_problem(api_tenant.http.put(url, json={"status": refused}), 409, "invalid-transition")
    assert_problem(api_tenant.http.put(url, json={"status": "asleep"}), 422, "validation")
    assert api_tenant.http.put(url, json={"status": "ready"}).json()["status"] == "ready"
    assert api_tenant.http.put(url, json={"status": "disconnected"}).json()["status"] == "disconnected"
    assert_problem(api_tenant.http.put(url, json={"status": "ready"}), 409, "invalid-transition")
    assert api_tenant.http.put(url, json={"status": "deprecated"}).json()["status"] == "deprecated"
    assert_problem(api_tenant.http.post(f"{url}/test"), 409, "invalid-transition")
    assert api_tenant.http.put(url, json={"status": "registered"}).json()["status"] == "registered"


def test_a_definition_change_resets_the_status(api_tenant: Tenant, unique: Names, closed_port: int) -> None:
    created = register(api_tenant.http, unique("s"), endpoint=f"127.0.0.1:{closed_port}")
    url = f"{C}/{created['id']}"
    assert api_tenant.http.post(f"{url}/test").json()["success"] is False
    assert api_tenant.http.get(url).json()["status"] == "error"
    changed = api_tenant.http.put(url, json={"endpoint": "127.0.0.1:2"}).json()
    assert changed["status"] == "registered"


def test_delete_answers_204_then_404(api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("d"))
    url = f"{C}/{created['id']}"
    response = api_tenant.http.delete(url)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(api_tenant.http.get(url), 404, "not-found")
    assert_problem(api_tenant.http.delete(url), 404, "not-found")
    assert_problem(api_tenant.http.get(f"{url}/history"), 404, "not-found")
    assert_problem(api_tenant.http.post(f"{url}/test"), 404, "not-found")
    assert api_tenant.http.get(C).json()["items"] == []


def test_if_match_guards_put_and_delete(api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("e"))
    url = f"{C}/{created['id']}"
    etag = api_tenant.http.get(url).headers["etag"]
    assert etag == '"1"'

    response = api_tenant.http.put(url, json={"metadata": {"v": 2}}, headers={"If-Match": etag})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'

    stale = api_tenant.http.put(url, json={"metadata": {"v": 3}}, headers={"If-Match": etag})
    assert assert_problem(stale, 412, "version-conflict")["current_version"] == 2
    assert api_tenant.http.get(url).json()["metadata"] == {"v": 2}
    garbage = api_tenant.http.put(url, json={"metadata": {"v": 3}}, headers={"If-Match": '"two"'})
    assert_problem(garbage, 412, "version-conflict")

    weak = api_tenant.http.put(url, json={"metadata": {"v": 3}}, headers={"If-Match": 'W/"2"'})
    assert weak.headers["etag"] == '"3"'
    anything = api_tenant.http.put(url, json={"metadata": {"v": 4}}, headers={"If-Match": "*"})
    assert anything.headers["etag"] == '"4"'

    stale_delete = api_tenant.http.delete(url, headers={"If-Match": '"3"'})
    assert assert_problem(stale_delete, 412, "version-conflict")["current_version"] == 4
    assert api_tenant.http.get(url).status_code == 200
    assert api_tenant.http.delete(url, headers={"If-Match": '"4"'}).status_code == 204
    assert_problem(api_tenant.http.get(url), 404)


def test_idempotency_key_replays_the_first_create(api_tenant: Tenant, unique: Names) -> None:
    body = {"name": unique("i"), "connector_type": "custom", "endpoint": "127.0.0.1:7"}
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = api_tenant.http.post(C, json=body, headers=key)
    second = api_tenant.http.post(C, json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["etag"] == first.headers["etag"]
    assert [item["id"] for item in api_tenant.http.get(C).json()["items"]] == [first.json()["id"]]

    changed = api_tenant.http.post(C, json={**body, "endpoint": "127.0.0.1:8"}, headers=key)
    body_problem = assert_problem(changed, 422, "validation")
    assert body_problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]

    without = api_tenant.http.post(C, json=body)
    assert_problem(without, 409, "duplicate-name")
    assert len(api_tenant.http.get(C).json()["items"]) == 1


def test_a_test_of_a_closed_port_is_success_false(
    server: Server, api_tenant: Tenant, unique: Names, closed_port: int
) -> None:
    created = register(api_tenant.http, unique("t"), endpoint=f"127.0.0.1:{closed_port}")
    response = api_tenant.http.post(f"{C}/{created['id']}/test")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["success"] is False
    assert result["connector_id"] == created["id"]
    assert result["details"]["error_kind"] == "refused"
    assert str(closed_port) in result["error"]
    assert result["tested_at"]
    fetched = api_tenant.http.get(f"{C}/{created['id']}")
    after = fetched.json()
    assert after["status"] == "error"
    assert after["last_used_at"] == result["tested_at"]
    assert after["version"] == 2  # a test is a change: the ETag grows
    assert fetched.headers["etag"] == '"2"'


def test_a_test_of_a_listening_port_succeeds(api_tenant: Tenant, unique: Names, listener: int) -> None:
    created = register(api_tenant.http, unique("t"), endpoint=f"127.0.0.1:{listener}")
    response = api_tenant.http.post(f"{C}/{created['id']}/test")
    assert response.status_code == 200
    result = response.json()
    assert result["success"] is True, result
    assert result["error"] is None
    assert result["details"]["port"] == listener
    assert "connect_ms" in result["details"]["phases"]
    assert api_tenant.http.get(f"{C}/{created['id']}").json()["status"] == "connected"


def test_a_test_of_an_unsaved_definition_stores_nothing(
    api_tenant: Tenant, unique: Names, listener: int, closed_port: int
) -> None:
    definition = {"name": unique("u"), "connector_type": "custom", "endpoint": f"127.0.0.1:{listener}"}
    response = api_tenant.http.post(f"{C}/test", json=definition)
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert response.json()["connector_id"] == ""
    refused = api_tenant.http.post(f"{C}/test", json={**definition, "endpoint": f"127.0.0.1:{closed_port}"})
    assert refused.json()["details"]["error_kind"] == "refused"
    assert api_tenant.http.get(C).json()["items"] == []
    actions = [e["action"] for e in api_tenant.http.get("/api/v1/audit").json()["items"]]
    assert actions.count("connector.test_unsaved") == 2
    assert "connector.create" not in actions
    bad = api_tenant.http.post(f"{C}/test", json={**definition, "connector_type": "teleport"})
    assert_problem(bad, 422, "unknown-connector-type")


def test_history_is_newest_first_and_pages(
    api_tenant: Tenant, unique: Names, listener: int, closed_port: int
) -> None:
    created = register(api_tenant.http, unique("h"), endpoint=f"127.0.0.1:{closed_port}")
    url = f"{C}/{created['id']}"
    assert api_tenant.http.get(f"{url}/history").json() == {"items": [], "next_cursor": None}
    outcomes = []
    for endpoint in (f"127.0.0.1:{closed_port}", f"127.0.0.1:{listener}", f"127.0.0.1:{closed_port}"):
        assert api_tenant.http.put(url, json={"endpoint": endpoint}).status_code == 200
        outcomes.append(api_tenant.http.post(f"{url}/test").json())

    history = api_tenant.http.get(f"{url}/history").json()
    assert history["next_cursor"] is None
    assert history["items"] == outcomes[::-1]
    assert [r["success"] for r in history["items"]] == [False, True, False]

    first = api_tenant.http.get(f"{url}/history", params={"limit": 2}).json()
    assert first["items"] == outcomes[:0:-1]
    rest = api_tenant.http.get(f"{url}/history", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert rest == {"items": [outcomes[0]], "next_cursor": None}
    assert_problem(api_tenant.http.get(f"{url}/history", params={"limit": 0}), 422)


def test_audit_records_each_change_with_the_key_as_actor(
    api_tenant: Tenant, unique: Names, closed_port: int
) -> None:
    created = register(api_tenant.http, unique("a"), endpoint=f"127.0.0.1:{closed_port}")
    url = f"{C}/{created['id']}"
    api_tenant.http.put(url, json={"metadata": {"x": 1}})
    api_tenant.http.post(f"{url}/test")
    api_tenant.http.delete(url)

    events = api_tenant.http.get("/api/v1/audit", params={"connector_id": created["id"]}).json()["items"]
    assert [e["action"] for e in events] == [
        "connector.delete",
        "connector.test",
        "connector.update",
        "connector.create",
    ]
    assert {e["actor"] for e in events} == {f"key:{api_tenant.key_id}"}
    assert {e["tenant_id"] for e in events} == {api_tenant.id}
    assert events[2]["details"]["changed"] == ["metadata"]
    assert events[1]["details"]["error_kind"] == "refused"

    page = api_tenant.http.get("/api/v1/audit", params={"limit": 2}).json()
    assert [e["action"] for e in page["items"]] == ["connector.delete", "connector.test"]
    rest = api_tenant.http.get("/api/v1/audit", params={"cursor": page["next_cursor"]}).json()
    assert [e["action"] for e in rest["items"]][:2] == ["connector.update", "connector.create"]
    assert_problem(api_tenant.http.get("/api/v1/audit", params={"cursor": "zz"}), 422, "validation")
