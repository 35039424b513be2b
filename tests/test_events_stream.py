"""``GET /api/v1/events``: the tenant's events as server-sent events, from a real ``connectord
serve`` per backend, read as a client reads them (httpx streaming, the SSE wire format parsed
here): order, ids that resume a stream (``Last-Event-ID``, ``after``), one tenant only, no
secret, scopes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.conftest import BACKENDS, Server, Tenant, assert_problem, create_key, create_tenant, run_server

E = "/api/v1/events"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for this module (its tenants see only their own events)."""
    with run_server(str(request.param), tmp_path_factory.mktemp("events"), request) as running:
        yield running


@dataclass
class Message:
    """One server-sent event."""

    id: int
    event: str
    data: dict[str, Any]


class Stream:
    """An open event stream, read as the test asks; a read waits at most ``read`` seconds."""

    def __init__(self, server: Server, key: str, read: float = 15.0, **kwargs: Any) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(30, read=read))
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        self.response = self.http.send(
            self.http.build_request("GET", E, headers=headers, **kwargs), stream=True
        )
        self._items = self._parse()

    def _parse(self) -> Iterator[Message | str]:
        fields: dict[str, str] = {}
        for line in self.response.iter_lines():
            if line == "":
                if "data" in fields:
                    yield Message(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                elif "retry" in fields:
                    yield f"retry {fields['retry']}"
                fields = {}
            elif line.startswith(":"):
                yield "comment"
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")

    def first(self) -> Message | str:
        """The next item: an event, the retry field or a comment."""
        return next(self._items)

    def next(self) -> Message:
        """The next event (skipping the retry field and comments)."""
        while True:
            item = next(self._items)
            if isinstance(item, Message):
                return item

    def take(self, count: int) -> list[Message]:
        return [self.next() for _ in range(count)]

    def close(self) -> None:
        self.response.close()
        self.http.close()


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def _open(streams: list[Stream], server: Server, tenant: Tenant, **kwargs: Any) -> Stream:
    stream = Stream(server, tenant.key, **kwargs)
    streams.append(stream)
    assert stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.first() == "retry 2000"  # the stream is open from here on
    return stream


def _register(tenant: Tenant, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "connector_type": "custom", "endpoint": "127.0.0.1:9", **fields}
    response = tenant.http.post("/api/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_the_stream_carries_the_tenants_events_in_order(server: Server, streams: list[Stream]) -> None:
    tenant, other = create_tenant(server, "ev"), create_tenant(server, "ev-other")
    _register(tenant, "before")  # before the stream opens: not in a stream that starts now
    stream = _open(streams, server, tenant)
    secret = "pw-" + tenant.id
    first = _register(tenant, "db", endpoint=f"tcp://app:{secret}@127.0.0.1:9")
    _register(other, "theirs")
    changed = tenant.http.put(f"/api/v1/connectors/{first['id']}", json={"metadata": {"v": 2}}).json()
    assert tenant.http.delete(f"/api/v1/connectors/{first['id']}").status_code == 204
    second = _register(tenant, "db2")

    got = stream.take(4)
    assert [m.event for m in got] == [
        "connector.created",
        "connector.updated",
        "connector.deleted",
        "connector.created",
    ]
    assert [m.id for m in got] == sorted(m.id for m in got)
    assert len({m.id for m in got}) == 4
    assert [m.data["type"] for m in got] == [m.event for m in got]
    assert got[0].data["data"]["connector"] == first
    assert got[1].data["data"] == {"connector": changed, "changed": ["metadata"]}
    assert got[3].data["data"]["connector"] == second
    assert all(set(m.data) == {"type", "timestamp", "data"} for m in got)
    assert secret not in json.dumps([m.data for m in got])
    assert first["secret_fields"] == ["password"]
    # From the start: exactly the tenant's five events, none of the other tenant's, none twice.
    replay = _open(streams, server, tenant, read=1.5, params={"after": 0})
    assert [m.id for m in replay.take(5)[1:]] == [m.id for m in got]
    with pytest.raises(httpx.ReadTimeout):
        replay.next()


def test_last_event_id_and_after_resume_without_loss_or_repeats(
    server: Server, streams: list[Stream]
) -> None:
    tenant = create_tenant(server, "resume")
    stream = _open(streams, server, tenant)
    for i in range(3):
        _register(tenant, f"c{i}")
    first, second, third = stream.take(3)
    stream.close()
    _register(tenant, "while-away")

    resumed = _open(streams, server, tenant, headers={"Last-Event-ID": str(second.id)})
    again, missed = resumed.take(2)
    assert again.id == third.id
    assert again.data == third.data
    assert missed.data["data"]["connector"]["name"] == "while-away"

    replay = _open(streams, server, tenant, params={"after": 0})
    assert [m.id for m in replay.take(4)] == [first.id, second.id, third.id, missed.id]
    # A reconnecting EventSource sends Last-Event-ID with its first URL: the header wins.
    both = _open(streams, server, tenant, params={"after": 0}, headers={"Last-Event-ID": str(third.id)})
    assert both.next().id == missed.id


def test_the_stream_needs_the_read_scope_and_a_valid_last_event_id(server: Server) -> None:
    tenant = create_tenant(server, "scope")
    http = server.client(tenant.key)
    tester = server.client(create_key(server, tenant, ["connectors:test", "connectors:write"]))
    assert_problem(tester.get(E), 403, "forbidden")
    assert_problem(server.client().get(E), 401, "unauthorized")
    bad = assert_problem(http.get(E, headers={"Last-Event-ID": "abc"}), 422, "validation")
    assert bad["errors"][0]["loc"] == ["header", "Last-Event-ID"]
    assert_problem(http.get(E, params={"after": -1}), 422, "validation")


def test_a_client_that_leaves_ends_its_stream_quietly(server: Server) -> None:
    tenant = create_tenant(server, "leave")
    for _ in range(3):
        stream = Stream(server, tenant.key)
        assert stream.first() == "retry 2000"
        stream.close()
    _register(tenant, "after")  # the server still answers, and logged no error for the streams
    assert server.wait_for_log("/api/v1/events")
    log = server.log_text()
    assert "Traceback" not in log
    assert "unhandled" not in log
    assert "event stream ended" not in log
