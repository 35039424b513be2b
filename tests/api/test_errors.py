"""Bad input of every kind gets a 4xx problem document, never a 500 or a traceback.

(``conftest._check_response`` asserts the problem shape and the absence of any
5xx on every response; these tests pin the status and slug of each case.)
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator

import pytest

from .conftest import Server, Tenant, assert_problem, register

Names = Callable[[str], str]
C = "/api/v1/connectors"
LIMIT = 64 * 1024


def _oversized(name: str, size: int) -> bytes:
    body = json.dumps({"name": name, "connector_type": "custom", "metadata": {"blob": "x" * size}})
    return body.encode()


def test_a_body_over_64_kib_gets_413(api_tenant: Tenant, unique: Names) -> None:
    body = _oversized(unique("big"), LIMIT)
    assert len(body) > LIMIT
    response = api_tenant.http.post(C, content=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 413, "payload-too-large")
    assert "65536" in problem["detail"]
    created = register(api_tenant.http, unique("small"))
    put = api_tenant.http.put(
        f"{C}/{created['id']}", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(put, 413, "payload-too-large")
    assert [item["id"] for item in api_tenant.http.get(C).json()["items"]] == [created["id"]]


def test_a_chunked_body_over_64_kib_gets_413(api_tenant: Tenant, unique: Names) -> None:
    body = _oversized(unique("big"), LIMIT)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = api_tenant.http.post(C, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")
    assert api_tenant.http.get(C).json()["items"] == []


def test_a_chunked_body_under_the_limit_is_read(api_tenant: Tenant, unique: Names) -> None:
    body = json.dumps({"name": unique("chunked"), "connector_type": "custom"}).encode()
    response = api_tenant.http.post(
        C, content=iter([body[:10], body[10:]]), headers={"Content-Type": "application/json"}
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 201, response.text


def test_a_body_just_under_the_limit_is_not_413(api_tenant: Tenant, unique: Names) -> None:
    body = _oversized(unique("edge"), LIMIT - 200)
    assert len(body) <= LIMIT
    response = api_tenant.http.post(C, content=body, headers={"Content-Type": "application/json"})
    # Read and validated: the metadata limit (16 KiB) refuses it, not the body limit.
    assert assert_problem(response, 422, "validation")["errors"][0]["loc"] == ["metadata"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "x", "connector_type": ',
        b"not json at all",
        b'{"name": "x",}',
        b"\xff\xfe\xfa",
        b"\x80\x80",
        b"[" * 5000 + b"]" * 5000,
        b"",
    ],
    ids=["truncated", "text", "trailing-comma", "not-utf8", "bad-utf8", "deep", "empty"],
)
def test_a_malformed_body_gets_422(api_tenant: Tenant, raw: bytes) -> None:
    for method, path in [("POST", C), ("POST", f"{C}/test"), ("PUT", f"{C}/{uuid.uuid4()}")]:
        response = api_tenant.http.request(
            method, path, content=raw, headers={"Content-Type": "application/json"}
        )
        body = assert_problem(response, 422, "validation")
        assert body["errors"], body
    assert api_tenant.http.get(C).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": 5, "connector_type": "custom"}, ["body", "name"]),
        ({"name": "x", "connector_type": ["custom"]}, ["body", "connector_type"]),
        ({"name": "x", "connector_type": "custom", "config": "tls"}, ["body", "config"]),
        ({"name": "x", "connector_type": "custom", "metadata": [1, 2]}, ["body", "metadata"]),
        ({"name": "x", "connector_type": "custom", "endpoint": 8080}, ["body", "endpoint"]),
        ({"connector_type": "custom"}, ["body", "name"]),
        ({"name": "x", "connector_type": "custom", "colour": "red"}, ["body", "colour"]),
        ({"name": "x", "connector_type": "custom", "tenant_id": "someone"}, ["body", "tenant_id"]),
        ([], ["body"]),
    ],
    ids=["name", "type", "config", "metadata", "endpoint", "missing", "unknown", "tenant", "array"],
)
def test_wrong_types_and_unknown_fields_get_422_with_field_errors(
    api_tenant: Tenant, body: object, loc: list[str]
) -> None:
    response = api_tenant.http.post(C, json=body)
    problem = assert_problem(response, 422, "validation")
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert all(isinstance(e["msg"], str) and e["msg"] for e in problem["errors"])


@pytest.mark.parametrize(
    "body",
    [
        {"status": 3},
        {"name": None, "colour": "red"},
        {"id": "01a00000-0000-7000-8000-000000000000"},
        {"version": 7},
        {"metadata": "x"},
    ],
)
def test_an_update_with_wrong_types_or_unknown_fields_gets_422(
    api_tenant: Tenant, unique: Names, body: dict[str, object]
) -> None:
    created = register(api_tenant.http, unique("u"))
    assert_problem(api_tenant.http.put(f"{C}/{created['id']}", json=body), 422, "validation")
    assert api_tenant.http.get(f"{C}/{created['id']}").json() == created


@pytest.mark.parametrize(
    "raw",
    [
        '{"k": "a\\ud800b"}',  # a lone surrogate: not UTF-8
        '{"\\udfff": 1}',
        '{"k": "a\\u0000b"}',
        '{"k": NaN}',
        '{"k": [1e400]}',
        '{"k": -Infinity}',
        '{"k": 123456789012345678901234567890}',
    ],
    ids=["surrogate", "surrogate-key", "nul", "nan", "inf", "minus-inf", "huge-int"],
)
def test_json_that_cannot_be_stored_and_served_back_gets_422(
    api_tenant: Tenant, unique: Names, raw: str
) -> None:
    """Stored, such a value once made every later read of the tenant's list a 500."""
    created = register(api_tenant.http, unique("ok"))
    headers = {"Content-Type": "application/json"}
    for field in ("metadata", "config"):
        body = f'{{"name": "{unique("j")}", "connector_type": "custom", "{field}": {raw}}}'
        problem = assert_problem(api_tenant.http.post(C, content=body, headers=headers), 422, "validation")
        assert problem["errors"][0]["loc"] == ["body", field]
        assert_problem(api_tenant.http.post(f"{C}/test", content=body, headers=headers), 422)
        update = f'{{"{field}": {raw}}}'
        put = api_tenant.http.put(f"{C}/{created['id']}", content=update, headers=headers)
        assert_problem(put, 422, "validation")
    listed = api_tenant.http.get(C)
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]


def test_unicode_that_can_be_stored_round_trips(api_tenant: Tenant, unique: Names) -> None:
    metadata = {"emoji": "\U0001f600", "accents": "é ü ß", "big": 2**63, "small": -(2**63), "f": 1.5e300}
    created = register(api_tenant.http, unique("uni"), metadata=metadata)
    assert created["metadata"] == metadata
    assert api_tenant.http.get(f"{C}/{created['id']}").json()["metadata"] == metadata


def test_odd_headers_and_paths_get_4xx(api_tenant: Tenant, unique: Names) -> None:
    created = register(api_tenant.http, unique("h"))
    url = f"{C}/{created['id']}"
    long_match = api_tenant.http.put(url, json={}, headers={"If-Match": '"' + "9" * 300 + '"'})
    assert_problem(long_match, 422, "validation")
    long_key = api_tenant.http.post(
        C, json={"name": unique("k"), "connector_type": "custom"}, headers={"Idempotency-Key": "k" * 201}
    )
    assert_problem(long_key, 422, "validation")
    for path in (f"{C}/{'x' * 5000}", f"{C}/%C3%A9t%C3%A9", f"{C}/..%2F..%2Fetc", f"{C}/%ED%A0%80"):
        assert_problem(api_tenant.http.get(path), 404)
    assert_problem(api_tenant.http.get(C, params={"limit": "9" * 40}), 422)
    assert_problem(api_tenant.http.get(C, params={"cursor": "c" * 201}), 422)
    assert_problem(api_tenant.http.get(C, params={"connector_type": "t" * 65}), 422)


def test_unknown_routes_and_methods_get_problems(server: Server, api_tenant: Tenant) -> None:
    assert_problem(api_tenant.http.get("/api/v1/nothing-here"), 404, "not-found")
    assert_problem(server.client().get("/nothing"), 404, "not-found")
    # No redirect from a trailing slash: /connectors/ is not /connectors.
    assert_problem(api_tenant.http.get(f"{C}/"), 404, "not-found")
    response = api_tenant.http.patch(f"{C}/{uuid.uuid4()}", json={})
    assert_problem(response, 405, "method-not-allowed")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "PUT", "DELETE"}
    response = api_tenant.http.request("OPTIONS", C)
    assert_problem(response, 405, "method-not-allowed")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert "DELETE" not in response.headers["allow"]


def test_a_wrong_content_type_gets_422(api_tenant: Tenant, unique: Names) -> None:
    body = json.dumps({"name": unique("ct"), "connector_type": "custom"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = api_tenant.http.post(C, content=body, headers={"Content-Type": content_type})
        assert response.status_code in (415, 422), response.text
    assert api_tenant.http.get(C).json()["items"] == []


def test_a_nul_in_an_id_or_filter_gets_422(server: Server, api_tenant: Tenant) -> None:
    """PostgreSQL refuses NUL in text: such ids and filters once reached the store as a 500."""
    for path in (f"{C}/a%00b", f"{C}/%00/history", f"{C}/%00/test"):
        method = "POST" if path.endswith("/test") else "GET"
        assert_problem(api_tenant.http.request(method, path), 422, "validation")
    assert_problem(api_tenant.http.put(f"{C}/%00", json={}), 422, "validation")
    assert_problem(api_tenant.http.delete(f"{C}/%00"), 422, "validation")
    for path, params in [
        (C, {"connector_type": "a\x00"}),
        (C, {"cursor": "\x00"}),
        ("/api/v1/audit", {"connector_id": "\x00"}),
        ("/api/v1/audit", {"cursor": "a\x00"}),
    ]:
        assert_problem(api_tenant.http.get(path, params=params), 422, "validation")
    admin = server.admin()
    assert_problem(admin.get("/api/v1/tenants/%00/keys"), 422, "validation")
    assert_problem(admin.delete(f"/api/v1/tenants/{api_tenant.id}/keys/%00"), 422, "validation")


def test_a_forged_cursor_gets_422(api_tenant: Tenant, unique: Names) -> None:
    """A cursor is base64url of an id; one that decodes to anything else is refused
    (its NULs once reached PostgreSQL as a 500; SQLite paged with it)."""
    created = register(api_tenant.http, unique("f"))
    forged = base64.urlsafe_b64encode(b"\x00" * 36).decode().rstrip("=")
    for path in (C, "/api/v1/audit", f"{C}/{created['id']}/history"):
        assert_problem(api_tenant.http.get(path, params={"cursor": forged}), 422, "validation")
