"""Apply Alembic migrations at start, on either backend."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: replicas starting together take turns migrating.
_PG_LOCK_ID = 0x636F6E6E


@functools.cache
def head_revision() -> str:
    """The newest migration of this release (what a ready store is at)."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def _config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: sa.Connection) -> None:
    command.upgrade(_config(connection), "head")


def upgrade_sqlite(path: Path) -> None:
    """Bring a SQLite file to the newest schema and WAL mode, one starter at a time.

    Stores starting together (worker processes, a CLI beside a server) would
    otherwise race to create the tables, and switching to WAL fails while
    another connection holds a lock; an exclusive lock on a file beside the
    database makes them take turns (the later ones find the work done).
    """
    import fcntl

    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(fd, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as conn:
                _upgrade(conn)
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        finally:
            engine.dispose()


async def upgrade_postgres(url: str) -> None:
    """Bring a PostgreSQL database to the newest schema, one replica at a time."""
    from sqlalchemy.ext.asyncio import create_async_engine

    _, sep, rest = url.partition("://")
    engine = create_async_engine(f"postgresql+asyncpg{sep}{rest}", poolclass=sa.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()
