"""The Alembic migrations build exactly the tables ``store/schema.py`` describes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from connectord.facade import ConnectorsFacade
from connectord.settings import Settings
from connectord.store.schema import metadata


def _diff(conn: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if not _is_alembic_table(d)]


def _is_alembic_table(diff: Any) -> bool:
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


async def test_migrated_schema_matches_metadata(facade: ConnectorsFacade, settings: Settings) -> None:
    if settings.database_url is None:
        engine = sa.create_engine(f"sqlite:///{settings.sqlite_path}")
        with engine.connect() as conn:
            diffs = _diff(conn)
        engine.dispose()
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        url = settings.database_url.get_secret_value().replace("postgresql://", "postgresql+asyncpg://", 1)
        async_engine = create_async_engine(url, poolclass=sa.NullPool)
        async with async_engine.connect() as conn:
            diffs = await conn.run_sync(_diff)
        await async_engine.dispose()
    assert diffs == []
