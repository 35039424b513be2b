"""Connector types, liveness, metrics, request ids and logs, OpenAPI and its docs page."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, Tenant, assert_problem, register

Names = Callable[[str], str]
C = "/api/v1/connectors"

#: Each built-in type and its default capabilities.
BUILTIN_CAPABILITIES = {
    "http": {"read", "write", "query"},
    "sql": {"read", "write", "query", "transaction"},
    "mcp": {"read", "write", "query"},
    "vector": {"read", "write", "vector_search"},
    "file": {"read", "write"},
    "serverless": {"query"},
    "stream": {"read", "stream"},
    "custom": {"read"},
}
OPERATION_IDS = {
    "listConnectors",
    "registerConnector",
    "testDefinition",
    "getConnector",
    "updateConnector",
    "deleteConnector",
    "testConnector",
    "connectorHistory",
    "listConnectorTypes",
    "listAuditEvents",
    "listTenants",
    "createTenant",
    "createKey",
    "listKeys",
    "revokeKey",
    "healthz",
    "readyz",
    "metrics",
    "connectorHealth",
    "startBulkTest",
    "getBulkTest",
    "createWebhook",
    "listWebhooks",
    "getWebhook",
    "updateWebhook",
    "deleteWebhook",
    "listWebhookDeliveries",
    "streamEvents",
    "connectorSecrets",
    "fingerprintSecrets",
    "checkoutCredentials",
    "updateTenant",
}


def _write_only_paths(schema: Any, path: str = "") -> set[str]:
    """Where in a JSON Schema a ``writeOnly: true`` sits (property paths, $defs included)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        if schema.get("writeOnly") is True:
            found.add(path)
        for key, value in schema.items():
            found |= _write_only_paths(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found |= _write_only_paths(value, f"{path}/{index}")
    return found


def test_connector_types_lists_the_eight_builtins_with_schemas(api_tenant: Tenant) -> None:
    response = api_tenant.http.get("/api/v1/connector-types")
    assert response.status_code == 200
    types = {item["name"]: item for item in response.json()["items"]}
    assert set(types) >= set(BUILTIN_CAPABILITIES)
    for name, capabilities in BUILTIN_CAPABILITIES.items():
        item = types[name]
        assert set(item["capabilities"]) == capabilities, name
        assert item["description"], name
        schema = item["config_schema"]
        assert schema["type"] == "object", name
        assert schema.get("additionalProperties") is False, f"{name}: unknown fields must be refused"
        assert {"timeout", "password"} <= set(schema["properties"]), name
        write_only = _write_only_paths(schema)
        assert any(p.startswith("/properties/password/") for p in write_only), (name, write_only)
        for path in write_only:  # every writeOnly leaf is a secret string
            node: Any = schema
            for part in path.strip("/").split("/"):
                node = node[int(part)] if isinstance(node, list) else node[part]
            assert node.get("format") == "password", (name, path)


def test_healthz_needs_no_key(server: Server) -> None:
    response = server.client().get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "ok"}


def _samples(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = server.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _delta(
    before: dict[tuple[str, frozenset[tuple[str, str]]], float],
    after: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    **labels: str,
) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_requests_by_route_and_status(
    server: Server, api_tenant: Tenant, unique: Names
) -> None:
    created = register(api_tenant.http, unique("m"))
    before = _samples(server)
    api_tenant.http.get(f"{C}/{created['id']}")
    api_tenant.http.get(f"{C}/{created['id']}")
    api_tenant.http.get(f"{C}/01a00000-0000-7000-8000-000000000000")
    assert_problem(server.client().get(C), 401)
    after = _samples(server)
    by_id = "/api/v1/connectors/{connector_id}"
    requests = "connectord_http_requests_total"
    assert _delta(before, after, requests, route=by_id, method="GET", status="200") == 2
    assert _delta(before, after, requests, route=by_id, method="GET", status="404") == 1
    assert _delta(before, after, requests, route=C, method="GET", status="401") == 1
    latency = "connectord_http_request_duration_seconds_count"
    assert _delta(before, after, latency, route=by_id, method="GET") == 3


def test_connector_types_publish_providers_and_protocols(api_tenant: Tenant) -> None:
    types = {item["name"]: item for item in api_tenant.http.get("/api/v1/connector-types").json()["items"]}
    assert types["vector"]["providers"] == ["pgvector", "chroma", "milvus", "qdrant", "weaviate", "pinecone"]
    assert types["serverless"]["providers"] == ["http", "aws_lambda"]
    assert types["stream"]["protocols"] == ["kafka", "nats", "amqp", "mqtt", "redis"]
    assert "providers" not in types["http"]


def test_metrics_count_test_outcomes_by_type_and_error_kind(
    server: Server, api_tenant: Tenant, unique: Names, closed_port: int, listener: int
) -> None:
    refused = register(api_tenant.http, unique("m"), endpoint=f"127.0.0.1:{closed_port}")
    reached = register(api_tenant.http, unique("m"), endpoint=f"127.0.0.1:{listener}")
    before = _samples(server)
    api_tenant.http.post(f"{C}/{refused['id']}/test")
    api_tenant.http.post(f"{C}/{refused['id']}/test")
    api_tenant.http.post(f"{C}/{reached['id']}/test")
    unsaved = {"name": "u", "connector_type": "custom", "endpoint": f"127.0.0.1:{closed_port}"}
    api_tenant.http.post(f"{C}/test", json=unsaved)
    after = _samples(server)
    tests = "connectord_connector_tests_total"
    failed = _delta(before, after, tests, connector_type="custom", outcome="failure", error_kind="refused")
    assert failed == 3
    assert _delta(before, after, tests, connector_type="custom", outcome="success", error_kind="") == 1


def test_request_ids_are_returned_echoed_and_logged(server: Server, api_tenant: Tenant) -> None:
    generated = api_tenant.http.get(C).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    assert api_tenant.http.get(C).headers["x-request-id"] != generated

    mine = "req-Test_1.2"
    response = api_tenant.http.get(C, headers={"X-Request-Id": mine})
    assert response.headers["x-request-id"] == mine
    problem = api_tenant.http.get(f"{C}/nope", headers={"X-Request-Id": mine + "b"})
    assert problem.headers["x-request-id"] == mine + "b"
    assert problem.json()["request_id"] == mine + "b"

    for insane in ("has space", "x" * 65, "semi;colon", "<script>"):
        replaced = api_tenant.http.get(C, headers={"X-Request-Id": insane}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", replaced), insane

    lines = server.wait_for_log(f'"request_id": "{mine}"')
    assert lines, "the request id is not in the log"
    entry = json.loads(lines[0])
    assert entry["logger"] == "connectord.access"
    assert entry["status"] == 200
    assert "GET /api/v1/connectors" in entry["message"]


def test_log_lines_are_json(server: Server, api_tenant: Tenant) -> None:
    response = api_tenant.http.get(f"{C}/nope")
    rid = response.headers["x-request-id"]
    assert server.wait_for_log(rid)
    json_lines = [line for line in server.log_text().splitlines() if line.startswith("{")]
    assert json_lines
    for line in json_lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
    assert not [line for line in json_lines if "Traceback" in line]


def test_openapi_has_stable_unique_operation_ids(server: Server) -> None:
    first = server.client().get("/openapi.json")
    assert first.status_code == 200
    spec = first.json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert set(ids) == OPERATION_IDS
    assert server.client().get("/openapi.json").json() == spec


def test_openapi_documents_every_problem_response(server: Server) -> None:
    spec = server.client().get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            success = [code for code in responses if code.startswith("2")]
            assert success, (method, path)
            if op["operationId"] in {"healthz", "readyz", "metrics"}:
                assert "security" not in op
                continue
            assert op["security"] == [{"HTTPBearer": []}], (method, path)
            expected = {"401", "403", "422"}
            if "{connector_id}" in path or "{tenant_id}" in path:
                expected.add("404")
            if method in {"post", "put"}:
                expected.add("413")
            if method in {"put", "delete"} and "{connector_id}" in path:
                expected.add("412")
            if path.endswith("/test"):
                expected.add("429")
            if op["operationId"] in {"registerConnector", "updateConnector", "createTenant"}:
                expected.add("409")
            assert expected <= set(responses), (method, path, sorted(responses))
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    content = response["content"]["application/problem+json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (path, code)
                    assert response["description"]


def test_docs_page_answers_html(server: Server) -> None:
    response = server.client().get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text
    assert "swagger" in response.text.lower()
