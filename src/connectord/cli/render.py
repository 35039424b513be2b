"""Output: ``--output table|json|yaml``, and the tables and lines people read."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
import yaml
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from connectord.cli.app import stdout
from connectord.client import ApiKey
from connectord.model import (
    HEALTH_WINDOWS,
    AuditEvent,
    ConnectorInfo,
    HealthSummary,
    Reach,
    TenantRecord,
    TestResult,
)


class Output(enum.StrEnum):
    """Output formats of read commands."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputOpt = Annotated[
    Output,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False, show_default=True),
]

_STATUS_STYLE = {
    "connected": "green",
    "error": "red",
    "disconnected": "dim",
    "deprecated": "dim strike",
    "registered": "yellow",
    "configuring": "yellow",
    "ready": "cyan",
}


def emit(data: Any, output: Output, table: Callable[[], RenderableType]) -> None:
    """Print ``data`` as JSON or YAML, or the rich rendering ``table`` builds."""
    console = stdout()
    if output is Output.JSON:
        console.out(json.dumps(data, indent=2, ensure_ascii=False, default=str), highlight=False)
    elif output is Output.YAML:
        console.out(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip(), highlight=False)
    else:
        console.print(table())


def when(value: datetime | None) -> str:
    """A time as ``2026-05-01 12:00:03`` UTC, or ``-``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def status_text(status: str) -> Text:
    """A status, coloured."""
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _plain(value: Any) -> Text:
    # Text, not markup: names and messages come from users and servers.
    return Text("-" if value is None or value == "" else str(value))


def connectors_table(items: Sequence[ConnectorInfo]) -> RenderableType:
    """``connectors list``."""
    if not items:
        return Text(
            "No connectors. Register one with: connectord connectors register NAME --connector-type TYPE"
        )
    table = _table("NAME", "TYPE", "STATUS", "ENDPOINT", "LAST TEST", "ID")
    for c in items:
        table.add_row(
            _plain(c.name),
            _plain(c.connector_type),
            status_text(c.status),
            _plain(c.endpoint),
            _plain(when(c.last_used_at)),
            Text(c.id, style="dim"),
        )
    return table


def _json_inline(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str) if value else "-"


def connector_detail(c: ConnectorInfo) -> RenderableType:
    """``connectors get``: one connector, field by field."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("Name", c.name),
        ("ID", c.id),
        ("Type", c.connector_type),
        ("Status", status_text(c.status)),
        ("Endpoint", c.endpoint),
        ("Capabilities", ", ".join(c.capabilities)),
        ("Config", _json_inline(c.config)),
        ("Secrets set", ", ".join(c.secret_fields) or "-"),
        ("Metadata", _json_inline(c.metadata)),
        ("Version", c.version),
        ("Check interval", interval_text(c.check_interval)),
        ("Failure threshold", "server default" if c.failure_threshold is None else c.failure_threshold),
        ("Created", when(c.created_at)),
        ("Updated", when(c.updated_at)),
        ("Last test", when(c.last_used_at)),
    ]
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else _plain(value))
    return table


def detail_and_result(c: ConnectorInfo, result: TestResult) -> RenderableType:
    """``connectors register --test``: the connector, then its first test."""
    return Group(connector_detail(c), result_line(c.name, result))


def _learned(details: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in details.items() if k not in ("phases", "error_kind")}
    parts = [f"{k}={v}" for k, v in shown.items() if not isinstance(v, dict | list)]
    phases = details.get("phases")
    if isinstance(phases, Mapping) and phases:
        parts.append("phases: " + " ".join(f"{k.removesuffix('_ms')}={v}ms" for k, v in phases.items()))
    return "; ".join(parts)


def result_line(name: str, result: TestResult) -> Text:
    """One test result: ``✓ orders-db  ok in 12 ms`` or ``✗ orders-db  refused: ...``."""
    latency = f"{result.latency_ms} ms" if result.latency_ms is not None else "-"
    line = Text()
    if result.success:
        line.append("✓ ", style="green").append(name, style="bold").append(f"  ok in {latency}")
    else:
        line.append("✗ ", style="red").append(name, style="bold")
        line.append(f"  {result.error_kind or 'failed'}", style="red").append(f" after {latency}: ")
        line.append(result.error or "")
    learned = _learned(result.details)
    if learned:
        line.append(f"\n  {learned}", style="dim")
    return line


def history_table(items: Sequence[TestResult]) -> RenderableType:
    """``connectors history``."""
    if not items:
        return Text("No tests yet. Run one with: connectord connectors test NAME")
    table = _table("TESTED", "RESULT", "KIND", "LATENCY", "ERROR")
    for r in items:
        table.add_row(
            _plain(when(r.tested_at)),
            Text("ok", style="green") if r.success else Text("failed", style="red"),
            _plain(r.error_kind),
            _plain(f"{r.latency_ms} ms" if r.latency_ms is not None else None),
            _plain(r.error),
        )
    return table


def types_table(types: Iterable[Mapping[str, Any]], secrets: Mapping[str, list[str]]) -> RenderableType:
    """``types``."""
    table = _table("TYPE", "CAPABILITIES", "PROVIDERS", "SECRET FIELDS", "DESCRIPTION")
    for t in types:
        table.add_row(
            Text(t["name"], style="bold"),
            _plain(", ".join(t.get("capabilities") or [])),
            _drivers(t.get("drivers") or []),
            _plain(", ".join(secrets.get(t["name"], [])) or None),
            _plain(t.get("description")),
        )
    return table


def _drivers(drivers: Iterable[Mapping[str, Any]]) -> Text:
    """Providers whose driver is installed in the default colour; the others dimmed, with their command."""
    text = Text()
    for d in drivers:
        if text:
            text.append(", ")
        if d.get("installed"):
            text.append(str(d["provider"]))
        else:
            text.append(f"{d['provider']} (not installed: {d['install']})", style="dim")
    return text


def fields_table(rows: Iterable[tuple[str, str, bool, str]]) -> RenderableType:
    """``types NAME``: the config fields of one type."""
    table = _table("FIELD", "TYPE", "SECRET", "DESCRIPTION")
    for name, kind, secret, description in rows:
        table.add_row(
            Text(name, style="bold"), _plain(kind), Text("yes" if secret else ""), _plain(description)
        )
    return table


def audit_table(items: Sequence[AuditEvent], names: Mapping[str, str]) -> RenderableType:
    """``audit``."""
    if not items:
        return Text("No audit events.")
    table = _table("TIME", "ACTOR", "ACTION", "CONNECTOR", "DETAILS")
    for ev in items:
        connector = names.get(ev.connector_id, ev.connector_id) if ev.connector_id else None
        table.add_row(
            _plain(when(ev.at)),
            _plain(ev.actor),
            _plain(ev.action),
            _plain(connector),
            _plain(_json_inline(ev.details)),
        )
    return table


def tenants_table(items: Sequence[TenantRecord]) -> RenderableType:
    """``tenants list``."""
    table = _table("NAME", "ID", "CREATED", "CHECKOUT")
    for t in items:
        checkout = "on" if t.checkout_enabled else "off"
        table.add_row(Text(t.name, style="bold"), _plain(t.id), _plain(when(t.created_at)), _plain(checkout))
    return table


def keys_table(items: Sequence[ApiKey]) -> RenderableType:
    """``keys list``."""
    table = _table("NAME", "ID", "SCOPES", "REACH", "CREATED", "REVOKED")
    for k in items:
        style = "dim strike" if k.revoked_at else ""
        table.add_row(
            Text(k.name, style=style or "bold"),
            _plain(k.id),
            _plain(", ".join(k.scopes)),
            _plain(reach_text(k.reach)),
            _plain(when(k.created_at)),
            _plain(when(k.revoked_at) if k.revoked_at else None),
        )
    return table


def reach_text(reach: Reach) -> str:
    """A key's reach as people read it: ``whole tenant``, or its ids and selector."""
    if not reach.narrowed:
        return "whole tenant"
    parts = [f"{len(reach.connector_ids)} connector(s)"] if reach.connector_ids is not None else []
    parts += [",".join(f"{k}={v}" for k, v in reach.selector)] if reach.selector is not None else []
    return " or ".join(parts)


def tenant_dict(t: TenantRecord) -> dict[str, Any]:
    """A tenant for JSON/YAML output."""
    return {
        "id": t.id,
        "name": t.name,
        "created_at": t.created_at.isoformat(),
        "checkout_enabled": t.checkout_enabled,
    }


def key_dict(k: ApiKey) -> dict[str, Any]:
    """A listed key for JSON/YAML output."""
    return {
        "id": k.id,
        "name": k.name,
        "scopes": list(k.scopes),
        "created_at": k.created_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        **k.reach.to_dict(),
    }


def results_block(results: Sequence[tuple[str, TestResult]]) -> RenderableType:
    """Named test results, one line (and details) each."""
    return Group(*(result_line(name, result) for name, result in results))


# --- health (connectors health) -------------------------------------------------------


def interval_text(seconds: float | None) -> str:
    """A connector's check interval as people read it."""
    if seconds is None:
        return "server default"
    return "off" if seconds == 0 else f"{seconds:g} s"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def _uptime_style(share: float | None) -> str:
    if share is None:
        return "dim"
    return "green" if share >= 0.99 else ("yellow" if share >= 0.9 else "red")


def _error_text(h: HealthSummary) -> Text:
    if h.last_error is None:
        return Text("-")
    text = Text(h.last_error.error_kind or "failed", style="red")
    return text.append(f" {when(h.last_error.tested_at)}: {h.last_error.error or ''}", style="")


def health_detail(name: str, h: HealthSummary) -> RenderableType:
    """``connectors health NAME``: one connector's health, figure by figure."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    status = status_text(h.status).append(f" since {when(h.status_since)}", style="")
    table.add_row("Connector", Text(name))
    table.add_row("Status", status)
    table.add_row("Consecutive failures", str(h.consecutive_failures))
    table.add_row("Down since", when(h.down_since))
    for window, _ in HEALTH_WINDOWS:
        w = h.windows.get(window)
        if w is not None:
            share = Text(_percent(w.uptime), style=_uptime_style(w.uptime))
            table.add_row(f"Uptime {window}", share.append(f" ({w.ok}/{w.checks} checks)", style=""))
    latency = f"p50 {_ms(h.latency_p50_ms)}, p95 {_ms(h.latency_p95_ms)} ({h.latency_samples} checks)"
    table.add_row("Latency 24h", latency)
    table.add_row("Last check", when(h.last_check_at))
    table.add_row("Last error", _error_text(h))
    return table


def health_table(rows: Sequence[tuple[ConnectorInfo, HealthSummary | None]]) -> RenderableType:
    """``connectors health`` (and ``--watch``): every connector's health, a line each."""
    if not rows:
        return Text("No connectors.")
    table = _table("NAME", "STATUS", "SINCE", "1H", "24H", "7D", "P50", "P95", "FAILS", "LAST ERROR")
    for info, h in rows:
        if h is None:  # deleted between the listing and its health
            continue
        shares = [h.windows[w].uptime if w in h.windows else None for w, _ in HEALTH_WINDOWS]
        table.add_row(
            _plain(info.name),
            status_text(h.status),
            _plain(when(h.status_since)),
            *(Text(_percent(u), style=_uptime_style(u)) for u in shares),
            _plain(_ms(h.latency_p50_ms)),
            _plain(_ms(h.latency_p95_ms)),
            Text(str(h.consecutive_failures), style="red" if h.consecutive_failures else ""),
            Text(h.last_error.error_kind or "failed", style="red") if h.last_error else _plain(None),
        )
    return table
