"""What the console asks of the facade beyond the API's calls, on SQLite and PostgreSQL:
a name search inside keyset pages, a list page's recent tests in one query, and the
test of an edit before it is saved (``test_changes``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from connectord.errors import InvalidTransitionError, NotFoundError, ValidationError
from connectord.facade import ConnectorsFacade
from connectord.lifecycle import changes_after_test
from connectord.model import AuditEvent, TestResult, new_id, utcnow


@pytest.fixture
def tenant_id() -> str:
    return f"console-{secrets.token_hex(4)}"


async def test_a_name_search_inside_keyset_pages(facade: ConnectorsFacade, tenant_id: str) -> None:
    names = ["Orders-DB", "orders-cache", "billing", "under_score", "underXscore"]
    for name in names:
        await facade.register_connector(tenant_id, name, "custom", "127.0.0.1:9")
    await facade.register_connector(f"{tenant_id}-other", "orders-elsewhere", "custom")

    async def found(text: str, **filters: str) -> list[str]:
        got: list[str] = []
        cursor = None
        while True:
            page = await facade.list_connectors_page(
                tenant_id, limit=1, cursor=cursor, name_contains=text, **filters
            )
            got += [c.name for c in page.items]
            if page.next_cursor is None:
                return got
            cursor = page.next_cursor

    assert await found("ORDERS") == ["Orders-DB", "orders-cache"]  # case ignored, one per page
    assert await found("%") == []  # LIKE's wildcards are plain characters
    assert await found("_") == ["under_score"]
    assert await found("r_s") == ["under_score"]
    assert await found("orders", status="registered", connector_type="http") == []
    assert await found("") == names  # an empty search is no search
    with pytest.raises(ValidationError):
        await facade.list_connectors_page(tenant_id, name_contains="x" * 201)


async def _record(
    facade: ConnectorsFacade, tenant_id: str, connector_id: str, ago: timedelta, ok: bool
) -> None:
    result = TestResult(ok, connector_id, 5, None if ok else "no", {}, utcnow() - ago)
    audit = AuditEvent(new_id(), tenant_id, "tests", "connector.test", connector_id, utcnow(), {})
    await facade.store.record_test(
        tenant_id,
        result,
        audit,
        lambda current: changes_after_test(current, result, None),
        failure_threshold=3,
    )


async def test_recent_tests_of_a_page_in_one_call(facade: ConnectorsFacade, tenant_id: str) -> None:
    busy, quiet, old = [
        (await facade.register_connector(tenant_id, name, "custom", "127.0.0.1:9")).id
        for name in ("busy", "quiet", "old")
    ]
    for ago, ok in ((timedelta(minutes=1), True), (timedelta(hours=2), False), (timedelta(hours=23), True)):
        await _record(facade, tenant_id, busy, ago, ok)
    await _record(facade, tenant_id, old, timedelta(days=3), True)
    stranger = (await facade.register_connector(f"{tenant_id}-x", "s", "custom")).id
    await _record(facade, f"{tenant_id}-x", stranger, timedelta(minutes=1), True)

    recent = await facade.recent_tests(tenant_id, [busy, quiet, old, stranger, "not-an-id", busy])
    assert set(recent) == {busy, old}  # untested and another tenant's: nothing
    assert (recent[busy].checks_24h, recent[busy].ok_24h) == (3, 2)
    assert recent[busy].uptime_24h == pytest.approx(2 / 3)
    assert recent[busy].last_tested_at is not None
    assert utcnow() - recent[busy].last_tested_at < timedelta(minutes=2)
    assert (recent[old].checks_24h, recent[old].uptime_24h) == (0, None)  # tested, but not lately
    assert recent[old].last_tested_at is not None
    assert await facade.recent_tests(tenant_id, []) == {}


@pytest.fixture
async def http_target() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A local HTTP server answering 200, and the requests' header blocks."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_an_edit_is_tested_with_the_stored_secrets_and_nothing_is_stored(
    facade: ConnectorsFacade, tenant_id: str, http_target: tuple[str, list[bytes]]
) -> None:
    from connectord.network.egress import EgressPolicy

    facade.egress = EgressPolicy(["127.0.0.0/8"])
    url, seen = http_target
    token = f"stored-{secrets.token_hex(4)}"
    info = await facade.register_connector(
        tenant_id, "api", "http", url, {"auth": {"kind": "bearer", "token": token}}
    )
    # The form leaves the secret empty: the stored one is used.
    result = await facade.test_changes(
        info.id, tenant_id, url, {"auth": {"kind": "bearer"}, "health_path": "/ready"}, actor="t"
    )
    assert result.success, result.error
    assert result.connector_id == info.id
    assert f"Authorization: Bearer {token}".encode() in seen[-1]
    assert seen[-1].startswith(b"GET /ready ")
    after = await facade.get_connector(info.id, tenant_id)
    assert after is not None
    assert (after.version, after.config, after.last_used_at) == (1, info.config, None)
    assert (await facade.history(info.id, tenant_id)).items == []
    audit = (await facade.audit(tenant_id, connector_id=info.id)).items
    assert [e.action for e in audit] == ["connector.test_unsaved", "connector.create"]
    assert token not in str(audit[0].details)

    # Another destination: the stored secret is not carried there unless sent again.
    with pytest.raises(ValidationError) as refused:
        await facade.test_changes(info.id, tenant_id, "http://127.0.0.2:9/", {"auth": {"kind": "bearer"}})
    assert [e.loc for e in refused.value.errors] == [("config", "auth", "token")]
    moved = await facade.test_changes(
        info.id, tenant_id, "http://127.0.0.1:9/", {"auth": {"kind": "bearer", "token": "new"}}
    )
    assert moved.details["error_kind"] == "refused"

    with pytest.raises(NotFoundError):
        await facade.test_changes(info.id, f"{tenant_id}-other", url, {})
    await facade.update_connector(info.id, tenant_id, status="deprecated")
    with pytest.raises(InvalidTransitionError):
        await facade.test_changes(info.id, tenant_id, url, {})
