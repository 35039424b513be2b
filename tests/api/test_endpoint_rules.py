"""The REST routes that take a definition answer 422 on ``endpoint`` for a refused one, and
leave the store unchanged (issue 10.2; the facade paths: ``tests/test_endpoint_rules.py``)."""

from __future__ import annotations

from tests.api.conftest import Tenant

C = "/api/v1/connectors"


def test_rest_routes_answer_422_on_endpoint(api_tenant: Tenant) -> None:
    http = api_tenant.http
    bad = {"name": "rules", "connector_type": "http", "endpoint": "file:///etc/passwd"}
    for path in (C, f"{C}/test"):
        response = http.post(path, json=bad)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["loc"] for e in response.json()["errors"]] == [["endpoint"]]
    assert http.get(C).json()["items"] == []
    made = http.post(C, json={**bad, "endpoint": "http://127.0.0.1:1/"}).json()
    response = http.put(f"{C}/{made['id']}", json={"endpoint": "gopher://127.0.0.1:70/"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["endpoint"]]
    assert http.get(f"{C}/{made['id']}").json()["version"] == 1
