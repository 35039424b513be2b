"""The request path's faster parts answer exactly what the slower ones did (issue 15).

Each shortcut is checked against the path it replaces: connectors serialised by orjson
from the dataclass against ``to_dict``, on both backends' stored rows; the lean route
handler's answers (401, 403, 404, 422 with FastAPI's error locations) on a real server;
the log formatters' time stamps against ``datetime.isoformat``; the cached metric
children against the counts a real server exposes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
import pytest

from connectord.api.app import create_app
from connectord.api.responses import connector_response, page_response
from connectord.api.routes.proxy import PROXY_METHODS
from connectord.api.routing import LeanRoute, _lean_handler
from connectord.facade import ConnectorsFacade
from connectord.logs import JsonFormatter, TextFormatter
from connectord.model import Page
from connectord.settings import Settings
from tests.api.conftest import Server, Tenant

C = "/api/v1/connectors"


async def test_connectors_serialise_as_to_dict_says(facade: ConnectorsFacade, tenant: str) -> None:
    plain = await facade.register_connector(tenant, "plain", "http", endpoint="https://a.example.com")
    rich = await facade.register_connector(
        tenant,
        "rich",
        "http",
        endpoint="https://b.example.com",
        config={"password": "pw-not-shown", "timeout": 2.5},
        metadata={"team": "ü", "n": 1},
        check_interval=0,
        failure_threshold=3,
    )
    await facade.update_connector(rich.id, tenant, status="disconnected")
    infos = [i for i in await facade.list_connectors(tenant) if i.id in {plain.id, rich.id}]
    assert len(infos) == 2
    for info in infos:
        assert connector_response(info).body == orjson.dumps(info.to_dict())
    page = page_response(Page(infos, "next"))
    assert page.body == orjson.dumps({"items": [i.to_dict() for i in infos], "next_cursor": "next"})
    assert b"pw-not-shown" not in page.body


async def test_a_connector_by_id_serialises_as_to_dict_says(facade: ConnectorsFacade, tenant: str) -> None:
    made = await facade.register_connector(tenant, "one", "http", config={"password": "pw-not-shown"})
    info = await facade.get_connector(made.id, tenant)
    assert info is not None
    assert connector_response(info).body == orjson.dumps(info.to_dict())
    # orjson would write any public attribute of the instance: one beside the fields
    # takes to_dict's way, so it never reaches an answer.
    info.leak = "pw-not-shown"  # type: ignore[attr-defined]
    assert connector_response(info).body == orjson.dumps(info.to_dict())
    assert b"pw-not-shown" not in page_response(Page([info], None)).body


def test_only_routes_of_path_parameters_and_a_key_are_lean(settings: Settings) -> None:
    app = create_app(settings)
    lean = {
        (r.path, m)
        for r in app.routes
        if isinstance(r, LeanRoute) and _lean_handler(r) is not None
        for m in r.methods
    }
    proxied = {
        (f"{C}/{{connector_id}}/proxy{rest}", m) for rest in ("", "/{path:path}") for m in PROXY_METHODS
    }
    assert lean == {(f"{C}/{{connector_id}}", "GET"), (f"{C}/{{connector_id}}/test", "POST")} | proxied


def test_lean_routes_answer_as_fastapi_did(server: Server, api_tenant: Tenant) -> None:
    made = api_tenant.http.post(
        C, json={"name": "lean", "connector_type": "http", "endpoint": "https://x.example"}
    )
    assert made.status_code == 201
    url = f"{C}/{made.json()['id']}"
    got = api_tenant.http.get(url)
    assert got.status_code == 200
    assert got.json() == made.json()
    assert got.headers["etag"] == made.headers["etag"]
    anonymous = server.client()
    assert anonymous.get(url).status_code == 401
    assert anonymous.get(url, headers={"Authorization": "Bearer cdk_wrong"}).status_code == 401
    # A bad key is refused before a bad id is looked at, as FastAPI's solving did.
    assert anonymous.get(f"{C}/%00").status_code == 401
    invalid = api_tenant.http.get(f"{C}/%00")
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["loc"] == ["path", "connector_id"]
    assert api_tenant.http.get(f"{C}/cn_missing").status_code == 404


@pytest.mark.parametrize("created", [0.0, 1_700_000_000.0005, 1_700_000_000.999, 1_700_000_001.25])
def test_log_time_stamps_are_unchanged(created: float) -> None:
    record = logging.makeLogRecord(
        {"name": "connectord.access", "msg": "GET / 200", "levelname": "INFO", "request_id": "r1"}
    )
    record.created = created
    moment = datetime.fromtimestamp(created, UTC)
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["time"] == moment.isoformat(timespec="milliseconds")
    assert entry["request_id"] == "r1"
    formatter = TextFormatter()
    for _ in range(2):  # the second line reuses the second's stamp
        assert (
            formatter.format(record)
            == f"{moment:%H:%M:%S} INFO    connectord.access: GET / 200 request_id=r1"
        )


def test_request_metrics_count_every_request(server: Server, api_tenant: Tenant) -> None:
    def count() -> float:
        text = server.client().get("/metrics").text
        line = 'connectord_http_requests_total{method="GET",route="/readyz",status="200"}'
        return sum(float(lo.split()[-1]) for lo in text.splitlines() if lo.startswith(line))

    before = count()
    for _ in range(3):
        assert server.client().get("/readyz").status_code == 200
    assert count() == before + 3
