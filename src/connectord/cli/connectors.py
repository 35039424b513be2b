"""``connectord connectors ...``: list, get, register, update, delete, test, history, and
``credentials`` (``connectord.cli.credentials``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from connectord.cli import health as health_view
from connectord.cli import render
from connectord.cli.app import Code, run, stderr
from connectord.cli.bulk import run_bulk
from connectord.cli.common import TenantOpt, backend, find_connector, type_secrets
from connectord.cli.credentials import credentials
from connectord.cli.inputs import (
    ConfigFileOpt,
    ConfigOpt,
    LegacyTypeOpt,
    MetadataFileOpt,
    MetadataOpt,
    SecretEnvOpt,
    SecretFileOpt,
    SecretPromptOpt,
    TypeFilterOpt,
    check_endpoint,
    check_no_inline_secrets,
    check_secret_fields,
    connector_type_flag,
    read_object,
    read_secrets,
)
from connectord.cli.render import Output, OutputOpt
from connectord.declarative import with_secrets
from connectord.errors import NotFoundError
from connectord.model import UNSET, ConnectorStatus, Unset

app = typer.Typer(
    help="Register, inspect, change, delete and test connectors.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

StatusFilter = Annotated[
    ConnectorStatus | None, typer.Option("--status", help="Only connectors in this status.")
]
Ref = Annotated[str, typer.Argument(help="Connector name or id.", metavar="NAME_OR_ID")]
IfVersion = Annotated[
    int | None,
    typer.Option("--if-version", help="Refuse (exit 4) unless the connector is still at this version."),
]
CheckIntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--check-interval",
        metavar="SECONDS|default",
        help="Seconds between scheduled checks (0 turns them off; 'default': the server's).",
    ),
]
FailureThresholdOpt = Annotated[
    str | None,
    typer.Option(
        "--failure-threshold",
        metavar="N|default",
        help="Failed checks in a row that send connector.down ('default': the server's).",
    ),
]


def _number(value: str | None, flag: str, kind: type[float] | type[int]) -> float | int | Unset | None:
    """A scheduling flag: left out (``UNSET``), ``default`` (``None``) or a number (the server
    checks its range)."""
    if value is None:
        return UNSET
    if value.strip().lower() == "default":
        return None
    try:
        return kind(value)
    except ValueError:
        what = "a number of seconds" if kind is float else "a whole number"
        raise typer.BadParameter(f"must be {what} or 'default'", param_hint=flag) from None


def _schedule(check_interval: str | None, failure_threshold: str | None) -> dict[str, Any]:
    """The scheduling flags given, as keyword arguments of register and update."""
    values = {
        "check_interval": _number(check_interval, "--check-interval", float),
        "failure_threshold": _number(failure_threshold, "--failure-threshold", int),
    }
    return {k: v for k, v in values.items() if not isinstance(v, Unset)}


@app.command("list")
def list_(
    ctx: typer.Context,
    connector_type: TypeFilterOpt = None,
    legacy_type: LegacyTypeOpt = None,
    status: StatusFilter = None,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """List connectors.

    [dim]connectord connectors list --connector-type sql --status error -o json[/dim]
    """
    connector_type = connector_type_flag(connector_type, legacy_type)

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            status_value = status.value if status else None
            items = [c async for c in api.list_connectors(connector_type, status_value, page_size=500)]
        render.emit([c.to_dict() for c in items], output, lambda: render.connectors_table(items))

    run(ctx, work)


@app.command()
def get(ctx: typer.Context, ref: Ref, tenant: TenantOpt = None, output: OutputOpt = Output.TABLE) -> None:
    """Show one connector (secrets are write-only: only their names are shown)."""

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            info = await find_connector(api, ref)
        render.emit(info.to_dict(), output, lambda: render.connector_detail(info))

    run(ctx, work)


@app.command()
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name unique in the tenant.")],
    connector_type: Annotated[
        str | None,
        typer.Option("--connector-type", help="Connector type (see: connectord types).", metavar="TYPE"),
    ] = None,
    legacy_type: LegacyTypeOpt = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="URL or host:port.")] = None,
    config: ConfigOpt = None,
    config_file: ConfigFileOpt = None,
    metadata: MetadataOpt = None,
    metadata_file: MetadataFileOpt = None,
    secret_env: SecretEnvOpt = None,
    secret_file: SecretFileOpt = None,
    secret_prompt: SecretPromptOpt = None,
    check_interval: CheckIntervalOpt = None,
    failure_threshold: FailureThresholdOpt = None,
    test: Annotated[bool, typer.Option("--test", help="Test the connector right after registering.")] = False,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Register a connector.

    [dim]connectord connectors register orders-db --connector-type sql \\
      --endpoint postgresql://app@127.0.0.1:5432/orders --secret-env password=ORDERS_DB_PASSWORD[/dim]
    """
    type_name = connector_type_flag(connector_type, legacy_type, required=True)
    assert type_name is not None  # required=True
    check_endpoint(endpoint)
    body = read_object(config, config_file, "config") or {}
    labels = read_object(metadata, metadata_file, "metadata")
    schedule = _schedule(check_interval, failure_threshold)

    async def work() -> int:
        async with backend(ctx, tenant) as api:
            patterns = await type_secrets(api, type_name)
            if config is not None:
                check_no_inline_secrets(body, patterns, "--config")
            secrets = read_secrets(secret_file, secret_env, secret_prompt)
            check_secret_fields(list(secrets), patterns, type_name)
            info = await api.register_connector(
                name, type_name, endpoint, with_secrets(body, secrets), labels, **schedule
            )
            result = await api.test_connector(info.id) if test else None
        if output is Output.TABLE:
            stderr().print(f"Registered [bold]{info.name}[/bold] ({info.id}).")
        if result is None:
            render.emit(info.to_dict(), output, lambda: render.connector_detail(info))
            return Code.OK
        render.emit(
            {"connector": info.to_dict(), "test": result.to_dict()},
            output,
            lambda: render.detail_and_result(info, result),
        )
        return Code.OK if result.success else Code.FAILED

    raise typer.Exit(run(ctx, work))


@app.command()
def update(
    ctx: typer.Context,
    ref: Ref,
    name: Annotated[str | None, typer.Option("--name", help="Rename the connector.")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help='New endpoint ("" clears it).')] = None,
    config: ConfigOpt = None,
    config_file: ConfigFileOpt = None,
    metadata: MetadataOpt = None,
    metadata_file: MetadataFileOpt = None,
    status: Annotated[
        ConnectorStatus | None,
        typer.Option(
            "--status", help="Set a status: disconnected pauses, deprecated retires, registered resumes."
        ),
    ] = None,
    secret_env: SecretEnvOpt = None,
    secret_file: SecretFileOpt = None,
    secret_prompt: SecretPromptOpt = None,
    unset_secret: Annotated[
        list[str] | None, typer.Option("--unset-secret", metavar="FIELD", help="Remove a secret.")
    ] = None,
    check_interval: CheckIntervalOpt = None,
    failure_threshold: FailureThresholdOpt = None,
    if_version: IfVersion = None,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Change a connector. A new --config replaces the old one; secrets it omits are kept.

    [dim]connectord connectors update orders-db --secret-prompt password
    connectord connectors update orders-db --status disconnected
    connectord connectors update orders-db --check-interval 60 --failure-threshold 5[/dim]
    """
    check_endpoint(endpoint)
    body = read_object(config, config_file, "config")
    labels = read_object(metadata, metadata_file, "metadata")
    schedule = _schedule(check_interval, failure_threshold)

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            current = await find_connector(api, ref)
            patterns = await type_secrets(api, current.connector_type)
            if config is not None and body is not None:
                check_no_inline_secrets(body, patterns, "--config")
            secrets: dict[str, str | None] = dict(read_secrets(secret_file, secret_env, secret_prompt))
            secrets.update(dict.fromkeys(unset_secret or ()))
            check_secret_fields(list(secrets), patterns, current.connector_type)
            new_config = body
            if secrets:
                new_config = with_secrets(body if body is not None else current.config, secrets)
            info = await api.update_connector(
                current.id,
                name=name,
                endpoint=endpoint,
                config=new_config,
                metadata=labels,
                status=status.value if status else None,
                if_version=if_version,
                **schedule,
            )
            if info is None:
                raise NotFoundError(f"connector {ref!r} was deleted meanwhile")
        if output is Output.TABLE:
            stderr().print(f"Updated [bold]{info.name}[/bold] (version {info.version}).")
        render.emit(info.to_dict(), output, lambda: render.connector_detail(info))

    run(ctx, work)


@app.command()
def delete(
    ctx: typer.Context,
    ref: Ref,
    if_version: IfVersion = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    tenant: TenantOpt = None,
) -> None:
    """Delete a connector with its secrets and test history."""

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            info = await find_connector(api, ref)
            if not yes and stderr().is_terminal:
                typer.confirm(f"Delete {info.name} ({info.connector_type}, {info.id})?", abort=True, err=True)
            if not await api.delete_connector(info.id, if_version=if_version):
                raise NotFoundError(f"connector {ref!r} was deleted meanwhile")
        stderr().print(f"Deleted [bold]{info.name}[/bold].")

    run(ctx, work)


@app.command("test")
def run_tests(
    ctx: typer.Context,
    refs: Annotated[
        list[str] | None, typer.Argument(help="Connector names or ids.", metavar="[NAME_OR_ID]...")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Test every connector (deprecated ones excepted).")
    ] = False,
    connector_type: TypeFilterOpt = None,
    legacy_type: LegacyTypeOpt = None,
    status: StatusFilter = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=1000, help="Tests at once (with --all).")
    ] = 8,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Test connectors now: connect, authenticate, report. Exits 1 if any test failed.

    [dim]connectord connectors test orders-db
    connectord connectors test --all --connector-type sql --concurrency 16[/dim]
    """
    connector_type = connector_type_flag(connector_type, legacy_type)
    bulk = all_ or connector_type is not None or status is not None
    if bulk == bool(refs):
        raise typer.BadParameter(
            "name connectors, or use --all (optionally with --connector-type / --status)"
        )

    async def work() -> int:
        async with backend(ctx, tenant) as api:
            if bulk:
                status_value = status.value if status else None
                return await run_bulk(api, connector_type, status_value, concurrency, output)
            results = []
            for ref in refs or ():
                info = await find_connector(api, ref)
                results.append((info.name, await api.test_connector(info.id)))
        render.emit(
            [{"name": n, **r.to_dict()} for n, r in results],
            output,
            lambda: render.results_block(results),
        )
        return Code.OK if all(r.success for _, r in results) else Code.FAILED

    raise typer.Exit(run(ctx, work))


@app.command()
def health(
    ctx: typer.Context,
    ref: Annotated[
        str | None,
        typer.Argument(help="Connector name or id (without: every connector).", metavar="[NAME_OR_ID]"),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the view live until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, max=3600, help="Seconds between refreshes (--watch).")
    ] = 2.0,
    connector_type: TypeFilterOpt = None,
    status: StatusFilter = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many connectors.")
    ] = 100,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Show health: uptime (1 h, 24 h, 7 d), latency p50/p95, the last error, the status and since when.

    [dim]connectord connectors health orders-db
    connectord connectors health --watch --interval 5[/dim]
    """
    if watch and output is not Output.TABLE:
        raise typer.BadParameter("shows a live table: use it without --output", param_hint="--watch")
    if ref is not None and (connector_type is not None or status is not None):
        raise typer.BadParameter(
            "filter the table of every connector: name no connector", param_hint="--status"
        )
    status_value = status.value if status else None

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            if watch:
                await health_view.watch(api, ref, connector_type, status_value, limit, interval)
                return
            view = await health_view.look(api, ref, connector_type, status_value, limit)
        render.emit(view.data, output, view.table)

    run(ctx, work)


@app.command()
def history(
    ctx: typer.Context,
    ref: Ref,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many results.")] = 20,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Show a connector's past test results, newest first."""

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            info = await find_connector(api, ref)
            page = await api.history(info.id, limit=limit)
        render.emit([r.to_dict() for r in page.items], output, lambda: render.history_table(page.items))

    run(ctx, work)


app.command("credentials")(credentials)
