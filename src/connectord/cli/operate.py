"""Operator commands: types, audit, tenants, keys, secrets rotation, serve."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from connectord.admin import SCOPES, TENANT_SCOPES
from connectord.cli import render
from connectord.cli.app import fail, guard, run, state_of, stderr, stdout
from connectord.cli.common import TenantOpt, backend, find_connector
from connectord.cli.render import Output, OutputOpt
from connectord.declarative import is_secret, secret_patterns
from connectord.errors import ConfigurationError, NotFoundError
from connectord.secrets import new_ring_entry
from connectord.settings import Settings


class LogFormat(enum.StrEnum):
    """Log line formats of the server."""

    TEXT = "text"
    JSON = "json"


class Switch(enum.StrEnum):
    """A setting turned on or off."""

    ON = "on"
    OFF = "off"


tenants_app = typer.Typer(help="Create and list tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
secrets_app = typer.Typer(help="Manage the encryption of stored secrets.", no_args_is_help=True)

KeyOnly = Annotated[
    bool, typer.Option("--key-only", help="Print only the API key (for: export CONNECTORD_API_KEY=$(...)).")
]


def _print_json(data: Mapping[str, Any]) -> None:
    stdout().out(json.dumps(dict(data)), highlight=False)


# --- types and audit ------------------------------------------------------------------


def _type_name(node: Mapping[str, Any]) -> str:
    if "type" in node:
        return str(node["type"])
    options = [n for n in node.get("anyOf") or node.get("oneOf") or () if n.get("type") != "null"]
    if "$ref" in node or any("$ref" in o for o in options):
        return "object"
    return " | ".join(str(o.get("type", "any")) for o in options) or "any"


def _fields(schema: Mapping[str, Any]) -> list[tuple[str, str, bool, str]]:
    patterns = secret_patterns(schema)
    return [
        (name, _type_name(node), is_secret((name,), patterns), str(node.get("description", "")))
        for name, node in (schema.get("properties") or {}).items()
    ]


def types_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this type's config fields.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """List connector types, or show one type's config fields.

    [dim]connectord types            connectord types sql -o json[/dim]
    """

    async def work() -> None:
        async with backend(ctx, None) as api:
            types = await api.connector_types()
        if name is None:
            secrets = {
                t["name"]: sorted(".".join(p) for p in secret_patterns(t.get("config_schema") or {}))
                for t in types
            }
            render.emit(types, output, lambda: render.types_table(types, secrets))
            return
        found = next((t for t in types if t["name"] == name), None)
        if found is None:
            raise NotFoundError(f"no connector type {name!r}; known: {', '.join(t['name'] for t in types)}")
        schema = found.get("config_schema") or {}
        render.emit(found, output, lambda: render.fields_table(_fields(schema)))

    run(ctx, work)


def audit(
    ctx: typer.Context,
    connector: Annotated[
        str | None, typer.Option("--connector", help="Only events of this connector (name or id).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many events.")] = 50,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Show who changed or tested what, newest first."""

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            connector_id = (await find_connector(api, connector)).id if connector else None
            page = await api.audit(limit=limit, connector_id=connector_id)
            names: dict[str, str] = {}
            for cid in {ev.connector_id for ev in page.items if ev.connector_id}:
                info = await api.get_connector(cid)
                if info is not None:
                    names[cid] = info.name
        render.emit(
            [ev.to_dict() for ev in page.items], output, lambda: render.audit_table(page.items, names)
        )

    run(ctx, work)


# --- tenants and keys -----------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tenant's name.")],
    key_only: KeyOnly = False,
) -> None:
    """Create a tenant and its first API key; prints {"tenant_id", "key_id", "api_key"} as JSON.

    The key is shown this once. With --url this needs a key with the admin scope.
    """

    async def work() -> None:
        async with backend(ctx, None, keyed=False) as api:
            created = await api.create_tenant(name)
        if key_only:
            stdout().out(created.api_key, highlight=False)
        else:
            _print_json(
                {"tenant_id": created.tenant_id, "key_id": created.key_id, "api_key": created.api_key}
            )

    run(ctx, work)


@tenants_app.command("update")
def tenants_update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tenant's name or id.", metavar="NAME_OR_ID")],
    checkout: Annotated[
        Switch | None,
        typer.Option(
            "--checkout",
            help="off: refuse every credential checkout of the tenant (the proxy and the MCP "
            "gateway keep working); on: allow it again.",
        ),
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Change a tenant's settings. With --url this needs a key with the admin scope.

    [dim]connectord tenants update acme --checkout off[/dim]
    """

    async def work() -> None:
        async with backend(ctx, name, keyed=False) as api:
            enabled = None if checkout is None else checkout is Switch.ON
            found = await api.update_tenant(await api.tenant_id(), checkout_enabled=enabled)
        render.emit(render.tenant_dict(found), output, lambda: render.tenants_table([found]))

    run(ctx, work)


@tenants_app.command("list")
def tenants_list(ctx: typer.Context, output: OutputOpt = Output.TABLE) -> None:
    """List tenants."""

    async def work() -> None:
        async with backend(ctx, None, keyed=False) as api:
            items = await api.list_tenants()
        render.emit([render.tenant_dict(t) for t in items], output, lambda: render.tenants_table(items))

    run(ctx, work)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "key",
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help=f"A scope (repeat for more): {', '.join(SCOPES)}. Default: the three connectors scopes.",
        ),
    ] = None,
    connectors: Annotated[
        list[str] | None,
        typer.Option(
            "--connector",
            help="Narrow the key to this connector id (repeat for more); other ids answer 404.",
            metavar="ID",
        ),
    ] = None,
    selectors: Annotated[
        list[str] | None,
        typer.Option(
            "--selector",
            help="Narrow the key to connectors whose metadata has KEY=VALUE (repeat: all must match). "
            "With --connector too, a connector matching either is covered.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    tenant: TenantOpt = None,
    key_only: KeyOnly = False,
) -> None:
    """Create an API key; prints {"key_id", "tenant_id", "api_key", "scopes", "connector_ids",
    "selector"} as JSON (shown once).

    [dim]connectord keys create --tenant acme --scope connectors:use --selector team=payments[/dim]
    """
    selector = parse_selector(selectors) if selectors else None

    async def work() -> None:
        async with backend(ctx, tenant, keyed=False) as api:
            key = await api.create_key(
                await api.tenant_id(),
                name,
                tuple(scopes or TENANT_SCOPES),
                connector_ids=connectors or None,
                selector=selector,
            )
        if key_only:
            stdout().out(key.api_key, highlight=False)
        else:
            _print_json(
                {
                    "key_id": key.key_id,
                    "tenant_id": key.tenant_id,
                    "api_key": key.api_key,
                    "scopes": list(key.scopes),
                    **key.reach.to_dict(),
                }
            )

    run(ctx, work)


def parse_selector(pairs: list[str]) -> dict[str, str]:
    """``--selector`` values (``team=payments``) as a selector; a bad one is a usage error
    naming the flag (the server checks the rest: lengths, the number of pairs)."""
    selector: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value:
            raise typer.BadParameter(
                f"{pair!r} is not KEY=VALUE (e.g. team=payments)", param_hint="--selector"
            )
        if key in selector and selector[key] != value:
            raise typer.BadParameter(f"{key!r} is given twice with different values", param_hint="--selector")
        selector[key] = value
    return selector


@keys_app.command("list")
def keys_list(ctx: typer.Context, tenant: TenantOpt = None, output: OutputOpt = Output.TABLE) -> None:
    """List a tenant's API keys (never their values)."""

    async def work() -> None:
        async with backend(ctx, tenant, keyed=False) as api:
            items = await api.list_keys(await api.tenant_id())
        render.emit([render.key_dict(k) for k in items], output, lambda: render.keys_table(items))

    run(ctx, work)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (see: connectord keys list).")],
    tenant: TenantOpt = None,
) -> None:
    """Revoke an API key; requests with it fail from now on."""

    async def work() -> None:
        async with backend(ctx, tenant, keyed=False) as api:
            if not await api.revoke_key(await api.tenant_id(), key_id):
                raise NotFoundError(f"the tenant has no active key {key_id!r}")
        stderr().print(f"Revoked key {key_id}.")

    run(ctx, work)


@secrets_app.command("new-key")
def secrets_new_key(
    label: Annotated[
        str | None, typer.Option("--label", help="A label for people (e.g. 2026-12); key ids do not use it.")
    ] = None,
) -> None:
    """Print a fresh 256-bit key for CONNECTORD_SECRET_KEY (nothing is stored).

    Append it to the ring, newest last (CONNECTORD_SECRET_KEY=OLD,NEW), then run
    secrets rotate: docs/secrets.md, "Rotation".
    """
    try:
        entry = new_ring_entry(label)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label") from None
    stdout().print(entry, markup=False, highlight=False, soft_wrap=True)


@secrets_app.command("rotate")
def secrets_rotate(
    ctx: typer.Context,
    new_key: Annotated[
        bool, typer.Option("--new-key", help="Add a fresh key to the key file first (embedded store).")
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Re-encrypt every stored secret under the newest key (local store only).

    With the embedded key file, --new-key adds a key and keys left unused are dropped.
    With CONNECTORD_SECRET_KEY, append the new key to the variable first; remove the
    reported unused keys after.
    """

    async def work() -> None:
        async with backend(ctx, None, keyed=False) as api:
            report = await api.rotate_secrets(new_key)
        data = {
            "primary_key_id": report.primary_key_id,
            "reencrypted": report.reencrypted,
            "unused_key_ids": report.unused_key_ids,
            "dropped_key_ids": report.dropped_key_ids,
        }

        def table() -> str:
            text = f"Re-encrypted {report.reencrypted} secret(s) under key {report.primary_key_id}."
            if report.dropped_key_ids:
                text += f"\nDropped unused key(s) from the key file: {', '.join(report.dropped_key_ids)}."
            elif report.unused_key_ids:
                text += (
                    f"\nNo secret uses key(s) {', '.join(report.unused_key_ids)} any more: "
                    "remove them from CONNECTORD_SECRET_KEY."
                )
            return text

        render.emit(data, output, table)

    run(ctx, work)


# --- serve ----------------------------------------------------------------------------


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=0, max=65535, help="Port [default: 8080].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes [default: 1].")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="postgresql://user@host/db (a URL with a password goes in CONNECTORD_DATABASE_URL).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Folder of the SQLite store and its key file.", file_okay=False),
    ] = None,
    log_format: Annotated[LogFormat | None, typer.Option("--log-format", help="Log line format.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Create a demo tenant on an empty store and print its key.")
    ] = False,
) -> None:
    """Run the REST API (flags override CONNECTORD_* variables).

    [dim]connectord serve --port 8080 --demo[/dim]
    """
    if database_url and urlsplit(database_url).password is not None:
        raise typer.BadParameter(
            "carries a password; put the URL in CONNECTORD_DATABASE_URL instead", param_hint="--database-url"
        )
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "database_url": database_url,
        "data_dir": data_dir,
        "log_format": log_format.value if log_format else None,
    }

    settings = guard(ctx, lambda: Settings(**{k: v for k, v in overrides.items() if v is not None}))
    try:
        from connectord.api.server import serve as serve_api
    except ImportError as exc:
        fail(state_of(ctx), ConfigurationError(f"the REST API is not available here (missing {exc.name})"))
    guard(ctx, lambda: serve_api(settings, demo=demo))
