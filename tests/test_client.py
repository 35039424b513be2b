"""The SDK (``connectord.client``) against a real ``connectord serve`` process on SQLite.

Retries are tested through a loopback TCP proxy in front of the server that
breaks chosen connections (closes before answering, closes after the server
answered, or answers 503 like a load balancer whose backend is away).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from connectord.client import AsyncClient, Client, TransportError, error_from_response
from connectord.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectordError,
    DuplicateNameError,
    InvalidTransitionError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    StoreError,
    UnknownConnectorTypeError,
    ValidationError,
    VersionConflictError,
)
from connectord.model import ConnectorInfo
from tests.cli_server import free_port, serve

SECRET = "sdk-S3cret-value-41c9"
RATE_PER_MINUTE = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, admin key)`` of a server; the admin key is made by the CLI in the same data dir."""
    extra = {"CONNECTORD_TEST_RATE_PER_MINUTE": str(RATE_PER_MINUTE)}
    with serve(tmp_path_factory.mktemp("sdk-server"), extra) as proc:
        yield proc.url, proc.admin_key


@pytest.fixture
def admin(server: tuple[str, str]) -> Iterator[Client]:
    """A client with the admin key."""
    with Client(server[0], server[1]) as client:
        yield client


@pytest.fixture
def key(admin: Client) -> str:
    """The key of a fresh tenant (read, write and test scopes)."""
    return admin.create_tenant(f"sdk-{uuid.uuid4().hex[:12]}").api_key


@pytest.fixture
def client(server: tuple[str, str], key: str) -> Iterator[Client]:
    """A client of a fresh tenant."""
    with Client(server[0], key, backoff=0.01) as c:
        yield c


@pytest.fixture
def listening() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a listening socket: TCP connects succeed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


class Counting(httpx.HTTPTransport):
    """The real transport, counting requests."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


# --- a proxy that breaks connections --------------------------------------------------


class Proxy:
    """A loopback TCP proxy to the server. ``plan`` says what to do with each new connection,
    in order: ``drop`` (close after reading the request), ``drop-answer`` (forward the request,
    close as the server starts answering) or ``503``; after the plan, forward."""

    def __init__(self, upstream: str, plan: list[str]) -> None:
        self.upstream = httpx.URL(upstream)
        self.plan = list(plan)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            action = self.plan.pop(0) if self.plan else "forward"
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, action), daemon=True).start()

    def _handle(self, conn: socket.socket, action: str) -> None:
        with conn:
            if action == "drop":
                conn.recv(65536)
                return
            if action == "503":
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            with socket.create_connection((self.upstream.host, self.upstream.port or 80)) as up:
                threading.Thread(target=_pump, args=(conn, up), daemon=True).start()
                while chunk := up.recv(65536):
                    if action == "drop-answer":
                        # shutdown, not just close: the pump thread still holds the socket.
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    conn.sendall(chunk)

    def close(self) -> None:
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass


@pytest.fixture
def proxy(server: tuple[str, str]) -> Iterator[type[Proxy]]:
    """Make proxies to the server; closed after the test."""
    made: list[Proxy] = []

    def make(plan: list[str]) -> Proxy:
        made.append(Proxy(server[0], plan))
        return made[-1]

    yield make  # type: ignore[misc]
    for p in made:
        p.close()


# --- connectors -----------------------------------------------------------------------


def test_every_connector_method(client: Client, listening: str) -> None:
    info = client.register_connector(
        "web", "custom", endpoint=listening, config={"tls": False, "password": SECRET}, metadata={"team": "a"}
    )
    assert isinstance(info, ConnectorInfo)
    assert info.created_at.tzinfo is not None
    assert (info.secret_fields, info.config, info.version) == (["password"], {"tls": False}, 1)
    assert client.get_connector(info.id) == info
    assert [c.id for c in client.list_connectors()] == [info.id]
    assert list(client.list_connectors(connector_type="sql")) == []
    updated = client.update_connector(info.id, metadata={"team": "b"}, if_version=1)
    assert updated is not None
    assert (updated.metadata, updated.version, updated.secret_fields) == ({"team": "b"}, 2, ["password"])
    result = client.test_connector(info.id)
    assert result.success, result.error
    assert result.connector_id == info.id
    assert result.tested_at is not None
    tested = client.get_connector(info.id)
    assert tested is not None
    assert (tested.status, tested.last_used_at) == ("connected", result.tested_at)
    assert [r.success for r in client.history(info.id).items] == [True]
    events = client.audit(connector_id=info.id).items
    assert [e.action for e in events] == ["connector.test", "connector.update", "connector.create"]
    assert events[0].at.tzinfo is not None
    unsaved = client.test_definition("probe", "custom", endpoint=listening)
    assert unsaved.success
    assert unsaved.connector_id == ""
    types = client.connector_types()
    assert "custom" in {t["name"] for t in types}
    assert client.health() == {"status": "ok"}
    assert client.delete_connector(info.id, if_version=tested.version)
    assert client.get_connector(info.id) is None
    assert client.update_connector(info.id, name="x") is None
    assert client.delete_connector(info.id) is False
    for text in (repr(info), str(info.to_dict()), repr(result), str(events)):
        assert SECRET not in text


def test_a_failed_connection_is_a_result_not_an_error(client: Client) -> None:
    port = free_port()
    info = client.register_connector("down", "custom", endpoint=f"127.0.0.1:{port}")
    result = client.test_connector(info.id)
    assert not result.success
    assert result.error_kind == "refused"
    assert client.history(info.id).items[0].error_kind == "refused"


def test_listing_pages_lazily_through_more_than_one_page(server: tuple[str, str], key: str) -> None:
    counting = Counting()
    with Client(server[0], key, transport=counting) as client:
        made = [client.register_connector(f"c{i}", "custom").id for i in range(7)]
        counting.requests.clear()
        iterator = client.list_connectors(page_size=3)
        assert next(iterator).id == made[0]
        assert counting.requests == ["GET /api/v1/connectors"]
        assert [made[0], *(c.id for c in iterator)] == made
        assert len(counting.requests) == 3
        page = client.list_connectors_page(limit=5)
        assert len(page.items) == 5
        assert page.next_cursor is not None
        rest = client.list_connectors_page(limit=5, cursor=page.next_cursor)
        assert ([c.id for c in page.items + rest.items], rest.next_cursor) == (made, None)


# --- errors ---------------------------------------------------------------------------


def test_every_error_the_server_sends_is_the_core_class(
    client: Client, admin: Client, server: tuple[str, str]
) -> None:
    with pytest.raises(ValidationError) as invalid:
        client.register_connector("x", "custom", config={"tls": "maybe"})
    assert invalid.value.errors[0].loc[:2] == ("config", "tls")
    with pytest.raises(UnknownConnectorTypeError) as unknown:
        client.register_connector("x", "nope")
    assert isinstance(unknown.value, ValidationError)
    assert unknown.value.name == "nope"
    assert "nope" in unknown.value.message
    with pytest.raises(NotFoundError):
        client.test_connector(str(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        client.history(str(uuid.uuid4()))
    info = client.register_connector("x", "custom")
    with pytest.raises(DuplicateNameError):
        client.register_connector("x", "custom")
    with pytest.raises(VersionConflictError) as stale:
        client.update_connector(info.id, name="y", if_version=7)
    assert stale.value.current_version == 1
    with pytest.raises(VersionConflictError):
        client.delete_connector(info.id, if_version=7)
    client.update_connector(info.id, status="deprecated")
    with pytest.raises(InvalidTransitionError):
        client.test_connector(info.id)
    with pytest.raises(PayloadTooLargeError):
        client.register_connector("big", "custom", metadata={"blob": "x" * 100_000})
    with pytest.raises(PermissionDeniedError):
        client.list_tenants()
    with Client(server[0], "cdk_" + SECRET) as stranger, pytest.raises(AuthenticationError) as denied:
        stranger.list_connectors_page()
    assert SECRET not in str(denied.value)
    read_only = admin.create_key(info.tenant_id, "ro", ["connectors:read"])
    with Client(server[0], read_only.api_key) as reader, pytest.raises(PermissionDeniedError):
        reader.register_connector("z", "custom")


def test_the_test_rate_limit_is_rate_limited_error(client: Client) -> None:
    with pytest.raises(RateLimitedError) as limited:  # noqa: PT012 - the loop is what reaches the limit
        for _ in range(RATE_PER_MINUTE + 5):
            client.test_definition("p", "custom", endpoint=f"127.0.0.1:{free_port()}")
    assert limited.value.retry_after > 0


@pytest.mark.parametrize(
    ("status", "slug", "cls"),
    [
        (409, "conflict", ConflictError),
        (503, "store-unavailable", StoreError),
        (500, "internal", ConnectordError),
        (409, "some-future-slug", ConflictError),
        (418, None, ConnectordError),
        (502, None, ConnectordError),
    ],
)
def test_slugs_no_request_can_provoke_map_too(status: int, slug: str | None, cls: type[Exception]) -> None:
    """A mock: the server cannot be made to lose its store or fail internally on demand,
    so these answers are built by hand in the server's problem format."""
    body = {
        "type": f"urn:connectord:problem:{slug}",
        "title": "t",
        "status": status,
        "detail": "what happened",
    }
    resp = httpx.Response(
        status, json=body if slug else None, headers={"content-type": "application/problem+json"}
    )
    exc = error_from_response(resp)
    assert type(exc) is cls
    assert exc.message == ("what happened" if slug else f"the server answered {status} {resp.reason_phrase}")


# --- retries, timeouts, configuration -------------------------------------------------


def test_idempotent_calls_are_retried_after_a_dropped_connection(
    client: Client, proxy: type[Proxy], key: str
) -> None:
    info = client.register_connector("r", "custom")
    broken = proxy(["drop", "503"])
    with Client(broken.url, key, backoff=0.01) as through:
        assert through.get_connector(info.id) == info
    assert broken.connections == 3
    once = proxy(["drop"])
    with Client(once.url, key, backoff=0.01) as through, pytest.raises(TransportError) as err:
        through.test_connector(info.id)  # a test is not idempotent: never retried
    assert once.connections == 1
    assert key not in str(err.value)
    never = proxy(["drop"] * 10)
    with Client(never.url, key, backoff=0.01, retries=2) as through, pytest.raises(TransportError):
        through.get_connector(info.id)
    assert never.connections == 3


def test_a_retried_create_returns_the_first_result(client: Client, proxy: type[Proxy], key: str) -> None:
    lost = proxy(["drop-answer"])
    with Client(lost.url, key, backoff=0.01) as through:
        info = through.register_connector("once", "custom", config={"password": SECRET})
    assert lost.connections == 2
    assert [c.id for c in client.list_connectors()] == [info.id]
    gone = proxy(["drop-answer"])
    with Client(gone.url, key, backoff=0.01) as through:
        assert through.delete_connector(info.id) is True  # the first attempt deleted it
    assert client.get_connector(info.id) is None


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)  # never accepted: connects succeed, nothing answers
        url = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        start = time.monotonic()
        with (
            Client(url, "cdk_" + SECRET, timeout=0.5, retries=0) as client,
            pytest.raises(TransportError) as err,
        ):
            client.get_connector("x")
    assert time.monotonic() - start < 5
    assert "timed out" in str(err.value)
    assert SECRET not in str(err.value) + repr(client)


def test_url_and_key_come_from_the_environment(
    server: tuple[str, str], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTORD_URL", server[0] + "/api/v1/")
    monkeypatch.setenv("CONNECTORD_API_KEY", key)
    with Client() as client:
        assert list(client.list_connectors()) == []
        assert key not in repr(client)
    assert client._http.is_closed
    monkeypatch.delenv("CONNECTORD_URL")
    with pytest.raises(ConfigurationError):
        Client()
    with pytest.raises(ConfigurationError):
        Client("ftp://127.0.0.1/")


# --- admin ----------------------------------------------------------------------------


def test_admin_methods(admin: Client, server: tuple[str, str]) -> None:
    tenant = admin.create_tenant(f"adm-{uuid.uuid4().hex[:8]}")
    assert tenant.api_key not in repr(tenant)
    assert tenant.name in {t.name for t in admin.list_tenants()}
    extra = admin.create_key(tenant.tenant_id, "ci", ["connectors:read"])
    assert extra.api_key not in repr(extra)
    assert extra.scopes == ("connectors:read",)
    keys = {k.name: k for k in admin.list_keys(tenant.tenant_id)}
    assert set(keys) == {"initial", "ci"}
    assert keys["ci"].revoked_at is None
    with Client(server[0], extra.api_key) as reader:
        assert list(reader.list_connectors()) == []
        assert admin.revoke_key(tenant.tenant_id, extra.key_id) is True
        with pytest.raises(AuthenticationError):
            list(reader.list_connectors())
    assert admin.revoke_key(tenant.tenant_id, extra.key_id) is False
    with pytest.raises(NotFoundError):
        admin.list_keys(str(uuid.uuid4()))


# --- the async client -----------------------------------------------------------------


async def test_async_client(server: tuple[str, str], key: str, listening: str, proxy: type[Proxy]) -> None:
    async with AsyncClient(server[0], key, backoff=0.01) as client:
        made = [(await client.register_connector(f"a{i}", "custom", endpoint=listening)).id for i in range(5)]
        assert [c.id async for c in client.list_connectors(page_size=2)] == made
        assert (await client.get_connector(made[0])) is not None
        assert (await client.get_connector(str(uuid.uuid4()))) is None
        updated = await client.update_connector(made[0], config={"password": SECRET}, if_version=1)
        assert updated is not None
        assert updated.secret_fields == ["password"]
        result = await client.test_connector(made[0])
        assert result.success, result.error
        assert (await client.test_definition("p", "custom", endpoint=listening)).success
        assert [r.success for r in (await client.history(made[0])).items] == [True]
        assert (await client.audit(limit=1)).next_cursor is not None
        assert {t["name"] for t in await client.connector_types()} >= {"custom", "sql"}
        assert (await client.health())["status"] == "ok"
        with pytest.raises(DuplicateNameError):
            await client.register_connector("a0", "custom")
        with pytest.raises(VersionConflictError):
            await client.delete_connector(made[1], if_version=9)
        with pytest.raises(PermissionDeniedError):
            await client.create_tenant("nope")
        assert await client.delete_connector(made[1])
        assert not await client.delete_connector(made[1])
    broken = proxy(["drop", "drop"])
    async with AsyncClient(broken.url, key, backoff=0.01) as through:
        assert (await through.get_connector(made[0])) is not None
    assert broken.connections == 3
