"""Keyset paging through 10,000 connectors while others are inserted, on both backends."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from connectord import ConnectorsFacade, ValidationError
from connectord.facade import MAX_LIMIT

TOTAL = 10_000
CHUNK = 500


async def _register_many(facade: ConnectorsFacade, tenant: str, prefix: str, count: int) -> list[str]:
    """Register ``count`` connectors, ``CHUNK`` at a time concurrently (SQLite group-commits them)."""
    ids: list[str] = []
    for start in range(0, count, CHUNK):
        infos = await asyncio.gather(
            *(
                facade.register_connector(tenant, f"{prefix}-{i:05d}", "custom", endpoint="h.invalid:1")
                for i in range(start, min(start + CHUNK, count))
            )
        )
        ids.extend(info.id for info in infos)
    return ids


@pytest.mark.slow
async def test_paging_10000_while_inserting(facade: ConnectorsFacade, tenant: str) -> None:
    began = time.monotonic()
    existing = await _register_many(facade, tenant, "pre", TOTAL)
    assert len(set(existing)) == TOTAL
    loaded = time.monotonic()

    stop = asyncio.Event()
    inserted: list[str] = []

    async def keep_inserting() -> None:
        n = 0
        while not stop.is_set():
            batch = await asyncio.gather(
                *(
                    facade.register_connector(tenant, f"new-{n + i:05d}", "custom", endpoint="h.invalid:1")
                    for i in range(10)
                )
            )
            inserted.extend(info.id for info in batch)
            n += 10
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_inserting())
    rng = random.Random(7)
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    try:
        while True:
            page = await facade.list_connectors_page(tenant, limit=rng.randint(100, 500), cursor=cursor)
            seen.extend(c.id for c in page.items)
            pages += 1
            await asyncio.sleep(0)  # let the writer in between pages
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        stop.set()
        await writer
    paged = time.monotonic()

    assert len(seen) == len(set(seen)), "a connector was listed twice"
    assert set(existing) <= set(seen), (
        f"{len(set(existing) - set(seen))} pre-existing connectors were skipped"
    )
    assert seen == sorted(seen), "keyset order is id order"
    assert set(seen) <= set(existing) | set(inserted)
    assert inserted, "the writer inserted while paging"
    assert pages >= TOTAL // 500

    # Offset paging (the seed's) gives the same sequence once nothing moves.
    everything = existing + inserted
    by_offset: list[str] = []
    offset = 0
    while True:
        chunk = await facade.list_connectors(tenant, limit=MAX_LIMIT, offset=offset)
        by_offset.extend(c.id for c in chunk)
        if len(chunk) < MAX_LIMIT:
            break
        offset += MAX_LIMIT
    by_cursor: list[str] = []
    cursor = None
    while True:
        page = await facade.list_connectors_page(tenant, limit=MAX_LIMIT, cursor=cursor)
        by_cursor.extend(c.id for c in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert by_offset == by_cursor
    assert sorted(by_offset) == sorted(everything)
    print(  # figures for the report (pytest -s)
        f"\n{facade.store.backend.__class__.__name__}: registered {TOTAL} in {loaded - began:.1f} s, "
        f"paged {pages} pages while inserting {len(inserted)} in {paged - loaded:.1f} s"
    )


async def test_keyset_pages_are_exact(facade: ConnectorsFacade, tenant: str, other_tenant: str) -> None:
    ids = await _register_many(facade, tenant, "c", 25)
    await _register_many(facade, other_tenant, "c", 5)
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        page = await facade.list_connectors_page(tenant, limit=10, cursor=cursor)
        sizes.append(len(page.items))
        seen.extend(c.id for c in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [10, 10, 5]
    assert seen == sorted(ids)
    exact = await facade.list_connectors_page(tenant, limit=25)
    assert exact.next_cursor is None  # no empty last page when the count divides evenly
    assert [c.id for c in await facade.list_connectors(tenant, limit=10, offset=20)] == sorted(ids)[20:]
    assert await facade.list_connectors(tenant, offset=25) == []


async def test_limit_bounds(facade: ConnectorsFacade, tenant: str) -> None:
    await _register_many(facade, tenant, "c", 3)
    assert len((await facade.list_connectors_page(tenant, limit=1)).items) == 1
    assert len((await facade.list_connectors_page(tenant, limit=MAX_LIMIT)).items) == 3
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValidationError):
            await facade.list_connectors_page(tenant, limit=bad)
