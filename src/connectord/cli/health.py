"""``connectors health``: one connector's health in detail, every connector's in a table,
and ``--watch``, the table kept live until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from connectord.cli import render
from connectord.cli.app import stdout
from connectord.cli.backends import Backend
from connectord.cli.common import find_connector
from connectord.errors import NotFoundError, StoreError, TransportError
from connectord.model import ConnectorInfo, HealthSummary, utcnow

#: Health summaries asked for at once (one request each against a server).
FETCH_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class View:
    """What one look found: the JSON form and the rich rendering."""

    data: Any
    table: Callable[[], RenderableType]


async def look(
    api: Backend, ref: str | None, connector_type: str | None, status: str | None, limit: int
) -> View:
    """One connector's health (``ref``), or that of the first ``limit`` matching connectors."""
    if ref is not None:
        info = await find_connector(api, ref)
        one = await api.health(info.id)
        return View({"name": info.name, **one.to_dict()}, lambda: render.health_detail(info.name, one))
    infos: list[ConnectorInfo] = []
    async for item in api.list_connectors(connector_type, status, page_size=min(limit, 1000)):
        infos.append(item)
        if len(infos) >= limit:
            break
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def health_of(info: ConnectorInfo) -> HealthSummary | None:
        async with gate:
            try:
                return await api.health(info.id)
            except NotFoundError:
                return None  # deleted since the listing

    found = await asyncio.gather(*(health_of(i) for i in infos))
    rows = list(zip(infos, found, strict=True))
    data = [{"name": i.name, **h.to_dict()} for i, h in rows if h is not None]
    return View(data, lambda: render.health_table(rows))


async def watch(
    api: Backend,
    ref: str | None,
    connector_type: str | None,
    status: str | None,
    limit: int,
    interval: float,
) -> None:
    """Refresh the view every ``interval`` seconds until Ctrl-C (or SIGTERM), which ends it
    cleanly: the last frame stays on screen. A server or store that does not answer is
    reported under the table and asked again at the next refresh."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shown: RenderableType = Text("Loading...", style="dim")
    try:
        with Live(shown, console=stdout(), auto_refresh=False) as live:
            while not stop.is_set():
                note = f"{render.when(utcnow())} UTC, every {interval:g} s; Ctrl-C to stop"
                fetch = asyncio.ensure_future(look(api, ref, connector_type, status, limit))
                if not await _first(fetch, stop):
                    break
                try:
                    shown = fetch.result().table()
                except (TransportError, StoreError) as exc:
                    note = f"{note}; last refresh failed: {exc.message}"
                live.update(Group(shown, Text(note, style="dim")), refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _first(fetch: asyncio.Future[View], stop: asyncio.Event) -> bool:
    """Wait for ``fetch`` unless ``stop`` comes first (then cancel it): whether it finished."""
    stopping = asyncio.ensure_future(stop.wait())
    waiting: list[asyncio.Future[Any]] = [fetch, stopping]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if fetch.done():
        return True
    fetch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await fetch
    return False
