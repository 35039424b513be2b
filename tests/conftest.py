"""Shared fixtures: every store and facade test runs on SQLite and on PostgreSQL.

PostgreSQL tests use one database made for the session (dropped at the end)
and a fresh tenant per test: every store method is tenant-scoped, so tests
cannot see each other's rows.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

PG_ADMIN_URL = os.environ.get("CONNECTORD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    name = f"connectord_test_{secrets.token_hex(4)}"
    try:
        _psql(f"CREATE DATABASE {name}")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed (scripts/ensure-services.sh): {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def secret_key_value() -> str:
    """A key ring value for ``CONNECTORD_SECRET_KEY``."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend a test runs on."""
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, secret_key_value: str) -> Settings:
    """Settings for one backend, with a private data dir."""
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        return Settings(data_dir=tmp_path, database_url=url, secret_key=secret_key_value)
    return Settings(data_dir=tmp_path)


@pytest.fixture
async def facade(settings: Settings) -> AsyncIterator[ConnectorsFacade]:
    """A started facade on the test's backend."""
    async with ConnectorsFacade(settings=settings) as f:
        yield f


@pytest.fixture
def admin(facade: ConnectorsFacade) -> Admin:
    """Tenant and key management over the test's facade."""
    return Admin(facade)


@pytest.fixture
async def tenant(admin: Admin) -> str:
    """A fresh tenant id."""
    record, _ = await admin.create_tenant(f"t-{secrets.token_hex(6)}")
    return record.id


@pytest.fixture
async def other_tenant(admin: Admin) -> str:
    """A second fresh tenant id."""
    record, _ = await admin.create_tenant(f"o-{secrets.token_hex(6)}")
    return record.id
