"""``connectord backup`` and ``connectord restore``: the embedded store, online."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connectord.cli.app import guard, stdout
from connectord.errors import ConfigurationError
from connectord.settings import Settings

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Folder of the SQLite store [default: CONNECTORD_DATA_DIR].", file_okay=False
    ),
]


def _embedded(data_dir: Path | None) -> Settings:
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    if settings.uses_postgres:
        raise ConfigurationError(
            "backup and restore are for the embedded store; back up PostgreSQL with pg_dump "
            "(docs/operations.md)"
        )
    return settings


def backup(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The backup file to write (must not exist).", dir_okay=False)],
    include_keyring: Annotated[
        bool,
        typer.Option(
            "--include-keyring", help="Also write the key ring to FILE.keyring (mode 0600); keep it apart."
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Back up the embedded store while the server runs (a consistent SQLite snapshot).

    [dim]connectord backup /backups/connectord-2026-12-03.db --include-keyring[/dim]
    """
    from connectord.store.backup import backup_sqlite

    def work() -> None:
        settings = _embedded(data_dir)
        ring = file.with_name(file.name + ".keyring") if include_keyring else None
        done = backup_sqlite(settings.sqlite_path, file, keyring_to=ring)
        out = stdout()
        out.print(
            f"backed up {done.connectors} connectors ({done.secrets} with secrets, schema {done.revision}) "
            f"to {done.path}",
            highlight=False,
        )
        if done.keyring is not None:
            out.print(f"key ring written to {done.keyring} (mode 0600): store it apart from the backup")
        else:
            out.print(
                "secrets stay encrypted in the backup: restoring needs this store's key ring "
                "(--include-keyring copies the key file; with CONNECTORD_SECRET_KEY keep that value)",
                highlight=False,
            )

    guard(ctx, work)


def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The backup file to restore.", dir_okay=False)],
    keyring: Annotated[
        Path | None,
        typer.Option(
            "--keyring", help="The key ring file written by backup --include-keyring.", dir_okay=False
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into an empty data directory (a store is never overwritten).

    [dim]connectord restore /backups/connectord-2026-12-03.db --keyring /keys/connectord.keyring[/dim]
    """
    from connectord.store.backup import restore_sqlite

    def work() -> None:
        settings = _embedded(data_dir)
        done = restore_sqlite(file, settings.data_dir, keyring=keyring)
        out = stdout()
        out.print(
            f"restored {done.connectors} connectors ({done.secrets} with secrets, schema {done.revision}) "
            f"into {settings.data_dir}",
            highlight=False,
        )
        if done.keyring is None and settings.secret_key is None and done.secrets:
            out.print(
                "no key ring given: the secrets cannot be opened until the original key file is put "
                f"in {settings.data_dir} (or CONNECTORD_SECRET_KEY is set)",
                highlight=False,
            )

    guard(ctx, work)
