"""Shared fixtures: every store and facade test runs on SQLite and on PostgreSQL.

PostgreSQL tests use one database made for the session (dropped at the end)
and a fresh tenant per test: every store method is tenant-scoped, so tests
cannot see each other's rows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import secrets
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind
from connectord.plugin import (
    ConnectorConfig,
    ConnectorType,
    ProbeContext,
    ProbeError,
    ProbeOutcome,
)
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


# --- added for the foundation suites (store, facade, secrets, lifecycle, paging) ---------

RawSql = Callable[..., Awaitable[list[tuple[Any, ...]]]]


@pytest.fixture
def secret_value() -> str:
    """A distinctive secret: searching serialised output for it finds any leak."""
    return f"s3cr3t-{secrets.token_hex(8)}"


def raw_sql_on(settings: Settings) -> RawSql:
    """A function running one statement straight on that database, around connectord.

    Write ``?`` placeholders; they become ``$1, $2...`` on PostgreSQL.
    """

    async def run(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if settings.database_url is None:
            with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as conn, conn:
                return [tuple(r) for r in conn.execute(sql, args).fetchall()]
        import asyncpg

        numbers = itertools.count(1)
        pg_sql = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            return [tuple(r) for r in await conn.fetch(pg_sql, *args)]
        finally:
            await conn.close()

    return run


@pytest.fixture
def raw_sql(settings: Settings) -> RawSql:
    """Run one statement straight on the test's database (see :func:`raw_sql_on`)."""
    return raw_sql_on(settings)


@pytest.fixture
def raw_sql_factory() -> Callable[[Settings], RawSql]:
    """:func:`raw_sql_on`, for tests that build their own settings."""
    return raw_sql_on


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own, for tests that act on every tenant (rotation)."""
    name = f"connectord_fresh_{secrets.token_hex(4)}"
    try:
        _psql(f"CREATE DATABASE {name}")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed (scripts/ensure-services.sh): {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def isolated_settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, secret_key_value: str
) -> Settings:
    """Like ``settings``, but on PostgreSQL in a database no other test uses."""
    if backend == "postgres":
        url = request.getfixturevalue("fresh_pg_url")
        return Settings(data_dir=tmp_path, database_url=url, secret_key=secret_key_value)
    return Settings(data_dir=tmp_path)


class BasicAuth(BaseModel):
    """Username and password (a test auth kind)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["basic"] = Field(description="Auth kind.")
    username: str = Field(description="User name.")
    password: SecretStr = Field(description="Password.")


class BearerAuth(BaseModel):
    """A bearer token (a test auth kind)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["bearer"] = Field(description="Auth kind.")
    token: SecretStr = Field(description="Token.")


class VaultConfig(ConnectorConfig):
    """Config of the ``vault`` test type: nested secrets and probe switches."""

    auth: Annotated[BasicAuth | BearerAuth, Field(discriminator="kind")] | None = Field(
        default=None, description="Auth, by kind."
    )
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Secret headers.")
    region: str | None = Field(default=None, description="A public setting.")
    ok: bool = Field(default=True, description="Whether the probe succeeds.")
    sleep: float = Field(default=0, ge=0, description="Seconds the probe waits first.")
    boom: bool = Field(default=False, description="Whether the probe crashes (a probe bug).")


class VaultType(ConnectorType):
    """A test type with nested secrets whose probe needs no network.

    It stands in for a real probe only where the facade's own behaviour is under
    test (status, versions, audit, redaction); real probes are tested against
    real servers in their own modules.
    """

    name: ClassVar[str] = "vault"
    description: ClassVar[str] = "Test type: nested secrets, scripted probe."
    config_model: ClassVar[type[ConnectorConfig]] = VaultConfig

    def __init__(self) -> None:
        self.seen: list[VaultConfig] = []
        self.started = asyncio.Event()  # set when a probe begins

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        config = ctx.config
        assert isinstance(config, VaultConfig)
        self.seen.append(config)
        self.started.set()
        if config.sleep:
            await asyncio.sleep(config.sleep)
        revealed = " ".join(_secret_texts(config))
        if config.boom:
            raise RuntimeError(f"driver crashed; it printed {revealed}")
        if not config.ok:
            # Drivers do put credentials in messages; the facade must redact them.
            raise ProbeError(ErrorKind.AUTH, f"login refused for {revealed}")
        return ProbeOutcome(details={"region": config.region})


def _secret_texts(config: VaultConfig) -> list[str]:
    texts = [s.get_secret_value() for s in config.headers.values()]
    if config.password is not None:
        texts.append(config.password.get_secret_value())
    if isinstance(config.auth, BasicAuth):
        texts.append(config.auth.password.get_secret_value())
    elif isinstance(config.auth, BearerAuth):
        texts.append(config.auth.token.get_secret_value())
    return texts


@pytest.fixture
def vault_type() -> type[VaultType]:
    """The ``vault`` test type's class, for tests that build their own facades."""
    return VaultType


@pytest.fixture
def vault(facade: ConnectorsFacade, vault_type: type[VaultType]) -> VaultType:
    """The ``vault`` test type, registered in the test's facade."""
    ctype = vault_type()
    facade.registry.register(ctype)
    return ctype


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    """A private facade on SQLite with one tenant, 127.0.0.1 open to probes: (facade, tenant id)."""
    settings = Settings(data_dir=tmp_path / "data", egress_allow=["127.0.0.1/32"])
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("local")
        yield facade, tenant.id
