"""The connectors list, a connector's page, its test, its deletion, and "test selected"."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.responses import Response

from connectord.console import chart
from connectord.console.web import View
from connectord.errors import NotFoundError
from connectord.model import ConnectorInfo, ConnectorStatus, TestResult

#: Rows of a list page.
PAGE_SIZE = 50
#: Tests the connector page charts.
HISTORY = 50
#: Audit events the connector page lists.
AUDIT = 20


def _filters(view: View) -> dict[str, str]:
    found = {name: view.query(name) for name in ("type", "status", "q")}
    return {k: v for k, v in found.items() if v}


async def list_page(view: View) -> Response:
    """The tenant's connectors: filters by type and status, a search by name, keyset
    pages, and per row its status, last test and uptime over 24 hours."""
    filters = _filters(view)
    page = await view.facade.list_connectors_page(
        view.tenant_id,
        filters.get("type"),
        filters.get("status"),
        PAGE_SIZE,
        view.query("cursor"),
        name_contains=filters.get("q"),
    )
    recent = await view.facade.recent_tests(view.tenant_id, [c.id for c in page.items])
    next_url = None
    if page.next_cursor is not None:
        next_url = "/connectors?" + urlencode({**filters, "cursor": page.next_cursor})
    return view.render(
        "connectors.html",
        connectors=page.items,
        recent=recent,
        filters=filters,
        next_url=next_url,
        paged=view.query("cursor") is not None,
        first_url="/connectors?" + urlencode(filters) if filters else "/connectors",
        types=sorted(view.facade.registry.types()),
        statuses=[str(s) for s in ConnectorStatus],
    )


async def _connector(view: View) -> ConnectorInfo:
    info = await view.facade.get_connector(view.request.path_params["connector_id"], view.tenant_id)
    if info is None:
        raise NotFoundError("no such connector")
    return info


def config_rows(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A config as ``(dotted name, value)`` rows, nested objects flattened."""
    rows: list[tuple[str, Any]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(config_rows(value, name + "."))
        else:
            rows.append((name, value))
    return rows


async def connector_page(view: View) -> Response:
    """A connector: its fields, capabilities and secrets (as "set"), its latest test with
    the phases, its history as a latency chart, its health summary and audit trail."""
    info = await _connector(view)
    history = await view.facade.history(info.id, view.tenant_id, HISTORY)
    health = await view.facade.health(info.id, view.tenant_id)
    audit = await view.facade.audit(view.tenant_id, AUDIT, connector_id=info.id)
    latest = history.items[0] if history.items else None
    return view.render(
        "connector.html",
        info=info,
        config=config_rows(info.config),
        latest=latest,
        history=history.items,
        chart=chart.latency_chart(history.items),
        health=health,
        audit=audit.items,
        just_tested=view.query("tested") == "1",
    )


async def test_now(view: View) -> Response:
    """Test the connector now; its page then shows the result on top."""
    info = await _connector(view)
    async with view.services.limiter.slot(view.tenant_id):
        await view.facade.test_connector(info.id, view.tenant_id, actor=view.actor)
    return view.redirect(f"/connectors/{info.id}?tested=1#latest-test")


async def delete(view: View) -> Response:
    """Delete the connector (its secrets and history go with it)."""
    info = await _connector(view)
    if not await view.facade.delete_connector(info.id, view.tenant_id, actor=view.actor):
        raise NotFoundError("no such connector")
    return view.redirect("/connectors", f"Deleted {info.name}.")


async def test_selected(view: View) -> Response:
    """Start testing the ticked connectors; their progress page follows."""
    assert view.form is not None
    selected: list[tuple[str, str]] = []
    for connector_id in dict.fromkeys(str(i) for i in view.form.getlist("ids")):
        info = await view.facade.get_connector(connector_id, view.tenant_id)
        if info is not None:  # another tenant's id is no connector of this one
            selected.append((info.id, info.name))
    if not selected:
        return view.redirect("/connectors", "Tick at least one connector to test.", "error")
    tenant_id, actor = view.tenant_id, view.actor

    async def test(connector_id: str) -> TestResult:
        return await view.facade.test_connector(connector_id, tenant_id, actor=actor)

    batch = view.services.batches.start(view.tenant_id, selected, test)
    return view.redirect(f"/tests/{batch.id}")


async def batch_page(view: View) -> Response:
    """A batch's progress: a bar and each connector's result as it comes (the page's
    script polls :func:`batch_progress`; without script the page reloads itself)."""
    batch = view.services.batches.get(view.tenant_id, view.request.path_params["batch_id"])
    if batch is None:
        raise NotFoundError("no such batch")
    return view.render("batch.html", batch=batch)


async def batch_progress(view: View) -> Response:
    """A batch's progress as JSON, for the progress page's script."""
    batch = view.services.batches.get(view.tenant_id, view.request.path_params["batch_id"])
    if batch is None:
        raise NotFoundError("no such batch")
    return Response(orjson.dumps(batch.to_dict()), media_type="application/json")
