"""A connector's own ``check_interval`` and ``failure_threshold`` through every caller:
the facade (SQLite and PostgreSQL), the REST API and the SDK (a real ``connectord serve``),
the CLI, and apply / export. Bad values are refused with a field error and change nothing."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from connectord.cli import app as cli_app
from connectord.client import AsyncClient, Client
from connectord.errors import ValidationError
from connectord.facade import ConnectorsFacade
from connectord.model import ConnectorInfo
from tests.cli_server import CLI_ENV, serve

BAD_INTERVALS: list[Any] = [-1, 0.5, 0.999, 30 * 86400 + 1, math.inf, math.nan, True, "60"]
BAD_THRESHOLDS: list[Any] = [0, -3, 1001, 2.5, True, "3"]


async def _connector(facade: ConnectorsFacade, tenant: str, **fields: Any) -> ConnectorInfo:
    return await facade.register_connector(
        tenant, f"c-{uuid.uuid4().hex[:8]}", "custom", "h.invalid:1", **fields
    )


# --- the facade, on both backends -----------------------------------------------------------


async def test_register_get_list_update_and_reset(facade: ConnectorsFacade, tenant: str) -> None:
    info = await _connector(facade, tenant, check_interval=2.5, failure_threshold=4)
    assert (info.check_interval, info.failure_threshold) == (2.5, 4)
    assert info.to_dict()["check_interval"] == 2.5
    stored = await facade.get_connector(info.id, tenant)
    assert stored == info
    assert (await facade.list_connectors(tenant))[0] == info

    off = await facade.update_connector(info.id, tenant, check_interval=0)
    assert off is not None
    assert (off.check_interval, off.failure_threshold, off.version) == (0.0, 4, 2)
    same = await facade.update_connector(info.id, tenant, check_interval=0, failure_threshold=4)
    assert same is not None
    assert same.version == 2  # nothing changed: no new version
    back = await facade.update_connector(info.id, tenant, check_interval=None, failure_threshold=None)
    assert back is not None
    assert (back.check_interval, back.failure_threshold, back.version) == (None, None, 3)
    untouched = await facade.update_connector(info.id, tenant, metadata={"a": 1})
    assert untouched is not None
    assert (untouched.check_interval, untouched.failure_threshold) == (None, None)

    events = (await facade.audit(tenant, connector_id=info.id)).items
    changed = [e.details["changed"] for e in events if e.action == "connector.update"]
    assert changed == [["metadata"], ["check_interval", "failure_threshold"], ["check_interval"]]


async def test_defaults_are_none(facade: ConnectorsFacade, tenant: str) -> None:
    info = await _connector(facade, tenant)
    assert (info.check_interval, info.failure_threshold) == (None, None)
    assert {"check_interval": None, "failure_threshold": None}.items() <= info.to_dict().items()


@pytest.mark.parametrize("value", BAD_INTERVALS)
async def test_bad_intervals_are_refused_and_change_nothing(
    facade: ConnectorsFacade, tenant: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as raised:
        await _connector(facade, tenant, check_interval=value)
    assert [e.loc for e in raised.value.errors] == [("check_interval",)]
    assert await facade.list_connectors(tenant) == []
    info = await _connector(facade, tenant, check_interval=10)
    with pytest.raises(ValidationError):
        await facade.update_connector(info.id, tenant, name="renamed", check_interval=value)
    assert await facade.get_connector(info.id, tenant) == info


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
async def test_bad_thresholds_are_refused_and_change_nothing(
    facade: ConnectorsFacade, tenant: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as raised:
        await _connector(facade, tenant, failure_threshold=value)
    assert [e.loc for e in raised.value.errors] == [("failure_threshold",)]
    info = await _connector(facade, tenant, failure_threshold=3)
    with pytest.raises(ValidationError):
        await facade.update_connector(info.id, tenant, failure_threshold=value)
    assert await facade.get_connector(info.id, tenant) == info


async def test_bounds_are_accepted(facade: ConnectorsFacade, tenant: str) -> None:
    for interval, threshold in ((1, 1), (30 * 86400, 1000), (1.5, 2.0)):
        info = await _connector(facade, tenant, check_interval=interval, failure_threshold=threshold)
        assert (info.check_interval, info.failure_threshold) == (float(interval), int(threshold))


async def test_a_replayed_create_keeps_the_fields(facade: ConnectorsFacade, tenant: str) -> None:
    first = await facade.register_connector(
        tenant, "idem", "custom", "h.invalid:1", idempotency_key="k1", check_interval=30
    )
    again = await facade.register_connector(
        tenant, "idem", "custom", "h.invalid:1", idempotency_key="k1", check_interval=30
    )
    assert again == first
    with pytest.raises(ValidationError):  # the same key with another request
        await facade.register_connector(
            tenant, "idem", "custom", "h.invalid:1", idempotency_key="k1", check_interval=31
        )


# --- REST and the SDK, on a real server -----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, admin key)`` of a ``connectord serve`` on SQLite."""
    with serve(tmp_path_factory.mktemp("check-fields")) as proc:
        yield proc.url, proc.admin_key


@pytest.fixture
def key(server: tuple[str, str]) -> str:
    """A fresh tenant's key."""
    with Client(server[0], server[1]) as admin:
        return admin.create_tenant(f"cf-{uuid.uuid4().hex[:12]}").api_key


@pytest.fixture
def http(server: tuple[str, str], key: str) -> Iterator[httpx.Client]:
    """Raw HTTP with the tenant's key."""
    with httpx.Client(base_url=server[0] + "/api/v1", headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def _problem_locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [e["loc"] for e in response.json()["errors"]]


def test_rest_create_update_reset(http: httpx.Client) -> None:
    body = {"name": "web", "connector_type": "custom", "endpoint": "127.0.0.1:9"}
    created = http.post("/connectors", json={**body, "check_interval": 90, "failure_threshold": 2})
    assert created.status_code == 201, created.text
    assert (created.json()["check_interval"], created.json()["failure_threshold"]) == (90.0, 2)
    cid = created.json()["id"]
    kept = http.put(f"/connectors/{cid}", json={"metadata": {"a": 1}})
    assert (kept.json()["check_interval"], kept.json()["failure_threshold"]) == (90.0, 2)
    reset = http.put(f"/connectors/{cid}", json={"check_interval": None, "failure_threshold": 7})
    assert reset.status_code == 200, reset.text
    assert (reset.json()["check_interval"], reset.json()["failure_threshold"]) == (None, 7)
    assert http.get(f"/connectors/{cid}").json() == reset.json()
    listed = http.get("/connectors").json()["items"]
    assert [(c["check_interval"], c["failure_threshold"]) for c in listed] == [(None, 7)]


REST_BAD = [
    *(("check_interval", v) for v in [-1, 0.5, 10**9, True, "60"]),
    *(("failure_threshold", v) for v in [0, 2.5, 1001, False, "3"]),
]


@pytest.mark.parametrize(("field", "value"), REST_BAD)
def test_rest_refuses_bad_values_with_a_field_error(http: httpx.Client, field: str, value: Any) -> None:
    body = {"name": "web", "connector_type": "custom", "endpoint": "127.0.0.1:9"}
    locs = _problem_locs(http.post("/connectors", json={**body, field: value}))
    assert all(field in loc for loc in locs), locs
    assert http.get("/connectors").json()["items"] == []
    created = http.post("/connectors", json=body).json()
    locs = _problem_locs(http.put(f"/connectors/{created['id']}", json={"name": "x", field: value}))
    assert all(field in loc for loc in locs), locs
    assert http.get(f"/connectors/{created['id']}").json() == created


def test_sdk_sync_and_async(server: tuple[str, str], key: str) -> None:
    import asyncio

    with Client(server[0], key) as client:
        info = client.register_connector(
            "sdk", "custom", "127.0.0.1:9", check_interval=15, failure_threshold=5
        )
        assert (info.check_interval, info.failure_threshold) == (15.0, 5)
        changed = client.update_connector(info.id, check_interval=0)
        assert changed is not None
        assert (changed.check_interval, changed.failure_threshold) == (0.0, 5)
        with pytest.raises(ValidationError) as raised:
            client.update_connector(info.id, failure_threshold=0)
        assert raised.value.errors[0].loc[-1] == "failure_threshold"

    async def reset() -> ConnectorInfo | None:
        async with AsyncClient(server[0], key) as client:
            return await client.update_connector(info.id, check_interval=None, failure_threshold=None)

    back = asyncio.run(reset())
    assert back is not None
    assert (back.check_interval, back.failure_threshold, back.version) == (None, None, 3)


# --- the CLI and apply / export (local store) -----------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI on a fresh local store: ``cli(*args, code=0) -> stdout``."""
    monkeypatch.setenv("CONNECTORD_DATA_DIR", str(tmp_path / "data"))
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        done = runner.invoke(cli_app, list(args))
        assert done.exit_code == code, f"{args} -> {done.exit_code}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return run


def test_cli_flags(cli: Any) -> None:
    register = ("connectors", "register", "db", "--connector-type", "custom", "--endpoint", "127.0.0.1:9")
    made = json.loads(cli(*register, "--check-interval", "45.5", "--failure-threshold", "2", "-o", "json"))
    assert (made["check_interval"], made["failure_threshold"]) == (45.5, 2)
    shown = cli("connectors", "get", "db")
    assert "45.5 s" in shown
    assert "Failure threshold" in shown
    off = json.loads(cli("connectors", "update", "db", "--check-interval", "0", "-o", "json"))
    assert (off["check_interval"], off["failure_threshold"]) == (0.0, 2)
    assert "off" in cli("connectors", "get", "db")
    reset = json.loads(cli("connectors", "update", "db", "--check-interval", "default",
                           "--failure-threshold", "default", "-o", "json"))  # fmt: skip
    assert (reset["check_interval"], reset["failure_threshold"]) == (None, None)
    cli("connectors", "update", "db", "--check-interval", "soon", code=2)
    cli("connectors", "update", "db", "--failure-threshold", "1.5", code=2)
    cli("connectors", "update", "db", "--check-interval", "0.2", code=2)  # the server's rule
    assert json.loads(cli("connectors", "get", "db", "-o", "json"))["version"] == reset["version"]


def test_apply_and_export(cli: Any, tmp_path: Path) -> None:
    file = tmp_path / "connectors.yaml"
    doc = {"apiVersion": "connectord/v1", "connectors": [
        {"name": "a", "connector_type": "custom", "endpoint": "127.0.0.1:9", "check_interval": 30},
        {"name": "b", "connector_type": "custom", "endpoint": "127.0.0.1:9", "failure_threshold": 4},
    ]}  # fmt: skip
    file.write_text(yaml.safe_dump(doc))
    cli("apply", "-f", str(file))
    exported = tmp_path / "export.yaml"
    cli("export", "-o", str(exported))
    entries = {e["name"]: e for e in yaml.safe_load(exported.read_text())["connectors"]}
    assert entries["a"]["check_interval"] == 30.0
    assert "failure_threshold" not in entries["a"]
    assert entries["b"]["failure_threshold"] == 4
    assert "Nothing to change: 2 unchanged." in cli("apply", "-f", str(exported))

    doc["connectors"][0].pop("check_interval")  # absent: back to the server's default
    doc["connectors"][1]["failure_threshold"] = 6
    file.write_text(yaml.safe_dump(doc))
    plan = cli("apply", "-f", str(file))
    assert "check_interval: 30 -> (default)" in plan
    assert "failure_threshold: 4 -> 6" in plan
    listed = {c["name"]: c for c in json.loads(cli("connectors", "list", "-o", "json"))}
    assert (listed["a"]["check_interval"], listed["b"]["failure_threshold"]) == (None, 6)

    doc["connectors"][0]["check_interval"] = 0.25
    doc["connectors"][1]["failure_threshold"] = "many"
    file.write_text(yaml.safe_dump(doc))
    refused = CliRunner().invoke(cli_app, ["apply", "-f", str(file)])
    assert refused.exit_code == 2, refused.output
    assert "connectors[0].check_interval" in refused.stderr
    assert "connectors[1].failure_threshold" in refused.stderr
    again = {c["name"]: c for c in json.loads(cli("connectors", "list", "-o", "json"))}
    assert again == listed  # nothing changed
