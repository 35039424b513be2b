"""``connectord worker``: scheduled checks, history retention and webhook deliveries, without the REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from connectord.cli.app import guard
from connectord.cli.operate import LogFormat
from connectord.settings import Settings


def worker(
    ctx: typer.Context,
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
) -> None:
    """Run scheduled checks, history retention and webhook deliveries, without the API, until SIGTERM.

    Same settings as serve; SIGINT (Ctrl-C) stops it too, releasing its leases at once.
    On PostgreSQL any number of workers and servers share the checks.
    On SQLite one process runs them: beside a serve that does, a worker exits with code 4.

    [dim]CONNECTORD_DATABASE_URL=postgresql://... CONNECTORD_SECRET_KEY=... connectord worker[/dim]
    """
    if database_url and urlsplit(database_url).password is not None:
        raise typer.BadParameter(
            "carries a password; put the URL in CONNECTORD_DATABASE_URL instead", param_hint="--database-url"
        )
    overrides: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "log_format": log_format.value if log_format else None,
    }
    settings = guard(ctx, lambda: Settings(**{k: v for k, v in overrides.items() if v is not None}))
    guard(ctx, settings.check_safe)
    guard(ctx, lambda: _run(settings))


def _run(settings: Settings) -> None:
    import asyncio

    from connectord.health.service import run_worker
    from connectord.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(run_worker(settings))
