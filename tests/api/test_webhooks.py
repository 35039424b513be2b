"""``/api/v1/webhooks`` over real HTTP (a ``connectord serve`` per backend): the secret shown
once, validation (422 with field errors, the store unchanged), tenant isolation (404), scopes
(403), and a delivery end to end from the server to a receiver on loopback."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from connectord.client import AsyncClient, Client
from connectord.errors import NotFoundError, ValidationError, VersionConflictError
from tests.webhook_receiver import Receiver

from .conftest import Server, Tenant, assert_problem, create_key, register

W = "/api/v1/webhooks"
#: Webhook URLs the server may store; none is ever delivered to in these tests but the receiver's.
URL = "https://127.0.0.1:9/hooks"


def _create(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = tenant.http.post(W, json={"url": URL, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_shows_the_secret_once_then_never(server: Server, api_tenant: Tenant) -> None:
    response = api_tenant.http.post(
        W, json={"url": URL, "events": ["connector.down"], "description": "pager"}
    )
    assert response.status_code == 201
    created = response.json()
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert response.headers["location"] == f"{W}/{created['id']}"
    assert response.headers["etag"] == '"1"'
    assert response.headers["cache-control"] == "no-store"
    assert created["events"] == ["connector.down"]
    assert (created["enabled"], created["tenant_id"], created["version"]) == (True, api_tenant.id, 1)

    read = api_tenant.http.get(f"{W}/{created['id']}")
    assert read.json() == created
    assert read.headers["etag"] == '"1"'
    listed = api_tenant.http.get(W).json()
    assert listed == {"items": [created], "next_cursor": None}
    updated = api_tenant.http.put(
        f"{W}/{created['id']}", json={"enabled": False}, headers={"If-Match": '"1"'}
    ).json()
    assert (updated["enabled"], updated["version"]) == (False, 2)
    for answer in (read, api_tenant.http.get(W), api_tenant.http.get(f"{W}/{created['id']}")):
        assert secret not in answer.text
        assert "secret" not in answer.text
    audit = api_tenant.http.get("/api/v1/audit").text
    assert "webhook.create" in audit
    assert "webhook.update" in audit
    assert secret not in audit
    assert server.wait_for_log(f"{W}/{created['id']}")
    assert secret not in server.log_text()
    assert secret.removeprefix("whsec_") not in server.log_text()


def test_update_honours_if_match_and_delete_removes(api_tenant: Tenant) -> None:
    hook = _create(api_tenant)
    path = f"{W}/{hook['id']}"
    stale = api_tenant.http.put(path, json={"description": "x"}, headers={"If-Match": '"7"'})
    assert assert_problem(stale, 412, "version-conflict")["current_version"] == 1
    changed = api_tenant.http.put(path, json={"events": ["connector.created", "connector.deleted"]})
    assert changed.json()["events"] == ["connector.created", "connector.deleted"]
    assert changed.headers["etag"] == '"2"'
    assert api_tenant.http.delete(path).status_code == 204
    assert_problem(api_tenant.http.get(path), 404, "not-found")
    assert_problem(api_tenant.http.delete(path), 404, "not-found")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://127.0.0.1/in"}, ["url"]),
        ({"url": "https://user:pw@127.0.0.1/in"}, ["url"]),
        ({"url": "https://127.0.0.1/in#x"}, ["url"]),
        ({"url": 5}, ["body", "url"]),
        ({}, ["body", "url"]),
        ({"url": URL, "events": []}, ["body", "events"]),
        ({"url": URL, "events": ["connector.exploded"]}, ["body", "events", 0]),
        ({"url": URL, "enabled": "yes"}, ["body", "enabled"]),
        ({"url": URL, "description": "d" * 501}, ["body", "description"]),
        ({"url": URL, "secret": "whsec_mine"}, ["body", "secret"]),
        ({"url": "https://127.0.0.1/" + "a" * 2048}, ["body", "url"]),
    ],
)
def test_invalid_input_is_a_422_with_field_errors(
    api_tenant: Tenant, body: dict[str, Any], loc: list[Any]
) -> None:
    problem = assert_problem(api_tenant.http.post(W, json=body), 422)
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert api_tenant.http.get(W).json()["items"] == []  # nothing stored


def test_an_invalid_update_changes_nothing(api_tenant: Tenant) -> None:
    hook = _create(api_tenant)
    for body in ({"url": "ftp://127.0.0.1/"}, {"events": ["nope"]}, {"enabled": 1}, {"color": "red"}):
        assert_problem(api_tenant.http.put(f"{W}/{hook['id']}", json=body), 422)
    secretless = {k: v for k, v in hook.items() if k != "secret"}
    assert api_tenant.http.get(f"{W}/{hook['id']}").json() == secretless


def test_another_tenants_webhook_answers_404_everywhere(api_tenant: Tenant, other_api_tenant: Tenant) -> None:
    hook = _create(api_tenant)
    path = f"{W}/{hook['id']}"
    other = other_api_tenant.http
    for response in (
        other.get(path),
        other.put(path, json={"enabled": False}),
        other.delete(path),
        other.get(f"{path}/deliveries"),
        api_tenant.http.get(f"{W}/{uuid.uuid4()}"),
        api_tenant.http.get(f"{W}/not-an-id/deliveries"),
    ):
        assert_problem(response, 404, "not-found")
    assert other.get(W).json()["items"] == []
    assert api_tenant.http.get(path).json()["enabled"] is True  # untouched


def test_webhooks_need_the_write_scope_and_events_the_read_scope(server: Server, api_tenant: Tenant) -> None:
    hook = _create(api_tenant)
    path = f"{W}/{hook['id']}"
    reader = server.client(create_key(server, api_tenant, ["connectors:read"]))
    for method, url, body in [
        ("POST", W, {"url": URL}),
        ("GET", W, None),
        ("GET", path, None),
        ("PUT", path, {"enabled": False}),
        ("DELETE", path, None),
        ("GET", f"{path}/deliveries", None),
    ]:
        assert_problem(reader.request(method, url, json=body), 403, "forbidden")
        assert_problem(server.client().request(method, url, json=body), 401, "unauthorized")
    tester = server.client(create_key(server, api_tenant, ["connectors:test"]))
    assert_problem(tester.get("/api/v1/events"), 403, "forbidden")
    assert_problem(server.client().get("/api/v1/events"), 401, "unauthorized")
    assert api_tenant.http.get(path).json()["enabled"] is True


def test_a_delivery_from_the_server_verifies_and_is_logged(api_tenant: Tenant, unique: Any) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    with Receiver() as receiver:
        hook = api_tenant.http.post(W, json={"url": receiver.url, "events": ["connector.created"]}).json()
        config = {"auth": {"kind": "bearer", "token": token}}
        connector = register(
            api_tenant.http,
            unique("api"),
            connector_type="http",
            endpoint="http://127.0.0.1:9/",
            config=config,
        )
        [received] = receiver.wait_for(lambda got: len(got) == 1)
        payload = received.verify(hook["secret"])
    assert payload["type"] == "connector.created"
    assert payload["data"]["connector"] == connector
    assert token not in received.body
    deadline = time.monotonic() + 10
    while True:  # the server records the answer just after the receiver sent it
        page = api_tenant.http.get(f"{W}/{hook['id']}/deliveries").json()
        if (page["items"] and page["items"][0]["status"] == "delivered") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [delivery] = page["items"]
    assert delivery["status"] == "delivered"
    assert delivery["event_id"] == received.webhook_id
    assert (delivery["event_type"], delivery["connector_id"]) == ("connector.created", connector["id"])
    assert (delivery["attempts"], delivery["last_status"], delivery["last_error"]) == (1, 200, None)
    assert token not in json.dumps(page)
    assert hook["secret"] not in json.dumps(page)


def test_deliveries_are_paged_newest_first(api_tenant: Tenant, unique: Any) -> None:
    with Receiver() as receiver:
        hook = api_tenant.http.post(W, json={"url": receiver.url, "events": ["connector.deleted"]}).json()
        deleted = []
        for _ in range(3):
            connector = register(api_tenant.http, unique("x"))
            assert api_tenant.http.delete(f"/api/v1/connectors/{connector['id']}").status_code == 204
            deleted.append(connector["id"])
        receiver.wait_for(lambda got: len(got) == 3)
    path = f"{W}/{hook['id']}/deliveries"
    first = api_tenant.http.get(path, params={"limit": 2}).json()
    assert first["next_cursor"] is not None
    second = api_tenant.http.get(path, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["next_cursor"] is None
    items = first["items"] + second["items"]
    assert [d["connector_id"] for d in items] == deleted[::-1]
    assert_problem(api_tenant.http.get(path, params={"cursor": "not-a-cursor"}), 422)


def test_the_sdk_manages_webhooks(server: Server, api_tenant: Tenant) -> None:
    with Client(server.base_url, api_tenant.key) as client:
        made = client.create_webhook(URL, events=["connector.down"], description="pager")
        assert made.secret.startswith("whsec_")
        assert made.secret not in repr(made)
        hook = made.webhook
        assert (hook.url, hook.events, hook.description, hook.enabled) == (
            URL,
            ["connector.down"],
            "pager",
            True,
        )
        assert client.get_webhook(hook.id) == hook
        assert client.list_webhooks().items == [hook]
        with pytest.raises(VersionConflictError):
            client.update_webhook(hook.id, enabled=False, if_version=9)
        paused = client.update_webhook(hook.id, enabled=False, if_version=1)
        assert paused is not None
        assert (paused.enabled, paused.version) == (False, 2)
        assert client.webhook_deliveries(hook.id).items == []
        with pytest.raises(ValidationError) as caught:
            client.create_webhook("ftp://127.0.0.1/")
        assert caught.value.errors[0].loc == ("url",)
        assert client.delete_webhook(hook.id)
        assert not client.delete_webhook(hook.id)
        assert client.get_webhook(hook.id) is None
        assert client.update_webhook(hook.id, enabled=True) is None
        with pytest.raises(NotFoundError):
            client.webhook_deliveries(hook.id)


async def test_the_async_sdk_manages_webhooks(server: Server, api_tenant: Tenant) -> None:
    async with AsyncClient(server.base_url, api_tenant.key) as client:
        made = await client.create_webhook(URL)
        hook = made.webhook
        assert hook.events == [
            "connector.created",
            "connector.updated",
            "connector.deleted",
            "connector.down",
            "connector.recovered",
        ]
        assert await client.get_webhook(hook.id) == hook
        assert (await client.list_webhooks(limit=1)).items == [hook]
        changed = await client.update_webhook(hook.id, url="https://127.0.0.2:9/in")
        assert changed is not None
        assert changed.url == "https://127.0.0.2:9/in"
        assert (await client.webhook_deliveries(hook.id)).next_cursor is None
        assert await client.delete_webhook(hook.id)
        assert await client.get_webhook(hook.id) is None
