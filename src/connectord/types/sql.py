"""The ``sql`` type: PostgreSQL (asyncpg), MySQL/MariaDB (asyncmy) and SQLite databases.

The probe connects to the address the egress policy checked (never to the name
again; TLS still verifies the name), authenticates, runs the probe query in a
read-only transaction and reports the server version, the database, the
current user and whether that user can write (``docs/sql-probe.md``).

Public helpers other types reuse (pgvector in ``types/vector.py``); their
signatures are stable:

- ``await connect_postgres(ctx, host, port, database, user, *, ssl_mode=None, ca_pem=None)``
  resolves ``host`` through ``ctx.network``, connects to the checked address
  with ``ctx.config.password`` and returns ``(asyncpg.Connection, phases)``
  (``resolve_ms``, ``connect_ms``). ``ssl_mode`` and ``ca_pem`` default to the
  config's fields of those names (``prefer`` and none). The caller closes the
  connection. Failures are :class:`ProbeError`.
- ``map_postgres_error(exc) -> ProbeError``: any asyncpg, TLS or socket error
  as an error kind with a tenant-safe message.

This module holds the config, the endpoint parsing, SQLite and the type; each
server dialect's probe and error mapping is in a private module
(``_sql_postgres``, ``_sql_mysql``) and what they share in ``_sql_common``.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, field_validator

from connectord.model import Capability, ErrorKind
from connectord.network import Network
from connectord.network.tls import CaPem
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.types._sql_common import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PORTS,
    MAX_PROBE_COLUMNS,
    MAX_PROBE_VALUE_BYTES,
    SQL_TOKENS,
    Dialect,
    SslMode,
    bounded_probe_query,
    capabilities,
    ms_since,
    network_error,
    summary,
)
from connectord.types._sql_mysql import map_mysql_error, mysql_can_write, probe_mysql
from connectord.types._sql_postgres import connect_postgres, map_postgres_error, probe_postgres
from connectord.types.endpoint import EndpointRule

__all__ = [
    "Dialect",
    "SqlConfig",
    "SqlType",
    "SslMode",
    "check_probe_query",
    "connect_postgres",
    "map_mysql_error",
    "map_postgres_error",
    "map_sqlite_error",
    "mysql_can_write",
]

SCHEME_DIALECTS = {
    "postgresql": Dialect.POSTGRESQL,
    "postgres": Dialect.POSTGRESQL,
    "mysql": Dialect.MYSQL,
    "mariadb": Dialect.MYSQL,
    "sqlite": Dialect.SQLITE,
}
MAX_PROBE_QUERY = 4000

_READ_STARTS = {"SELECT", "SHOW", "VALUES", "WITH", "TABLE"}
# Words that make a read statement write: DML inside WITH, SELECT ... INTO, row locks.
_WRITE_WORDS = {"INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "INTO", "LOCK"}


def check_probe_query(query: str) -> str:
    """Accept one read-only statement (SELECT, SHOW, VALUES, WITH, TABLE); ``ValueError`` otherwise.

    Comments and quoted text are skipped; MySQL's executable comments (``/*! ... */``)
    are refused because the server runs what they hold.
    """
    text = query.strip()
    if not text:
        raise ValueError("must not be empty")
    if re.search(r"/\*[!+M]", text):
        raise ValueError("must not contain executable comments (/*! ... */)")
    words: list[str] = []
    statement_ended = False
    for match in SQL_TOKENS.finditer(text):
        kind = match.lastgroup
        if kind == "comment" or (kind == "string" and not statement_ended):
            continue
        if statement_ended:
            raise ValueError("must be a single statement")
        if kind == "semi":
            statement_ended = True
        elif kind == "word":
            words.append(match.group().upper())
    if "/*" in SQL_TOKENS.sub(lambda m: "" if m.lastgroup in {"comment", "string"} else m.group(), text):
        raise ValueError("must not have an unterminated comment")
    if not words or words[0] not in _READ_STARTS:
        raise ValueError("must be a read-only statement starting with SELECT, SHOW, VALUES, WITH or TABLE")
    writes = sorted(_WRITE_WORDS.intersection(words))
    if writes:
        raise ValueError(f"must only read (found {', '.join(writes)})")
    return text


class SqlConfig(ConnectorConfig):
    """Config of a ``sql`` connector. The endpoint is a URL (``postgresql://host:5432/db``,
    ``mysql://user@host/db``, ``sqlite:///path/to/file.db``) or ``host:port`` with ``dialect``."""

    dialect: Dialect | None = Field(
        default=None, description="postgresql, mysql (MariaDB too) or sqlite; default: the endpoint's scheme."
    )
    database: str | None = Field(
        default=None,
        max_length=255,
        description="Database name (default: the endpoint's path; PostgreSQL: the user name). "
        "SQLite: the file path, if the endpoint has none.",
    )
    username: str | None = Field(
        default=None, max_length=255, description="Login name (default: the endpoint's user part)."
    )
    probe_query: str = Field(
        default="SELECT 1",
        max_length=MAX_PROBE_QUERY,
        description="One read-only statement run by the test, in a read-only transaction.",
    )
    ssl_mode: SslMode = Field(
        default=SslMode.PREFER,
        description="TLS: disable, prefer (TLS if offered, unverified), require (TLS, unverified), "
        "verify-full (TLS, certificate and name verified). Not used by SQLite.",
    )
    ca_pem: CaPem = Field(
        default=None,
        max_length=65536,
        description="CA certificates (PEM text, not a path) trusted for verify-full; default: system CAs.",
    )

    @field_validator("probe_query")
    @classmethod
    def _read_only_query(cls, value: str) -> str:
        return check_probe_query(value)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a ``sql`` connector points, from its endpoint and config together."""

    dialect: Dialect
    host: str | None
    port: int | None
    database: str | None
    user: str | None


def resolve_target(endpoint: str | None, config: SqlConfig) -> Target:
    """Combine the endpoint URL and the config; :class:`ProbeError` (invalid_config) if unusable."""
    if not endpoint and not (config.dialect is Dialect.SQLITE and config.database):
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is required")
    text = endpoint or ""
    scheme_dialect: Dialect | None = None
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        scheme_dialect = SCHEME_DIALECTS.get(scheme.split("+", 1)[0])
        if scheme_dialect is None:
            raise ProbeError(
                ErrorKind.INVALID_CONFIG,
                f"unknown endpoint scheme {scheme!r}: use postgresql://, mysql://, mariadb:// or sqlite:///",
            )
    dialect = config.dialect or scheme_dialect
    if dialect is None:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "set dialect or use a URL endpoint such as postgresql://")
    if scheme_dialect is not None and scheme_dialect is not dialect:
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"the endpoint's scheme is not {dialect}")
    if dialect is Dialect.SQLITE:
        path = unquote(urlsplit(text).path) if scheme_dialect else text
        if path.startswith("//"):  # SQLAlchemy's sqlite:////abs/path spelling
            path = "/" + path.lstrip("/")
        return Target(dialect, None, None, path or config.database, None)
    parts = urlsplit(text if scheme_dialect else f"tcp://{text}")
    if parts.query or parts.fragment:
        raise ProbeError(
            ErrorKind.INVALID_CONFIG, "the endpoint must not carry options (?...): use the config fields"
        )
    try:
        port = parts.port or DEFAULT_PORTS[dialect]
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's port is not a number") from exc
    if not parts.hostname:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint needs a host")
    database = config.database or unquote(parts.path.lstrip("/")) or None
    user = config.username or (unquote(parts.username) if parts.username else None)
    return Target(dialect, parts.hostname, port, database, user)


# --- SQLite ---------------------------------------------------------------------------


def sqlite_path(raw: str | None, network: Network) -> str:
    """The real path of a SQLite file inside a configured root.

    Outside every root (also through ``..`` or a symlink) is ``egress_denied``;
    inside but missing is ``not_found``. Roots are checked first, so a probe
    cannot learn whether a file outside them exists.
    """
    if not raw:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the SQLite file path is required (sqlite:///path)")
    if not os.path.isabs(raw):
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the SQLite file path must be absolute")
    real = network.local_path(raw)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError as exc:
        raise ProbeError(ErrorKind.NOT_FOUND, "no such SQLite file") from exc
    except OSError as exc:
        raise ProbeError(ErrorKind.UNAVAILABLE, f"cannot read the SQLite file: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the SQLite path is not a regular file")
    return real


def _sqlite_run(path: str, probe_query: str, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=seconds, check_same_thread=False)
    try:
        # A non-zero return aborts the statement (SQLITE_INTERRUPT): the time bound.
        conn.set_progress_handler(lambda: int(time.monotonic() > end), 1000)
        # SQLite runs in this process: a randomblob(1000000000) must not allocate a GB here.
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_PROBE_VALUE_BYTES)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # the file really is a database
        # Only now: the schema is loaded, so a table wider than the bound stays readable.
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_PROBE_COLUMNS)
        rows = conn.execute(bounded_probe_query(probe_query)).fetchall()
        conn.rollback()
    finally:
        conn.close()
    return {"probe_rows": len(rows)}


async def _probe_sqlite(ctx: ProbeContext, config: SqlConfig, target: Target) -> ProbeOutcome:
    path = sqlite_path(target.database, ctx.network)
    start = time.perf_counter()
    try:
        found = await asyncio.wait_for(
            asyncio.to_thread(_sqlite_run, path, config.probe_query, ctx.timeout), ctx.timeout + 1
        )
    except TimeoutError as exc:
        raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {ctx.timeout:g} s (SQLite)") from exc
    except Exception as exc:
        raise map_sqlite_error(exc) from exc
    can_write = os.access(path, os.W_OK) and os.access(os.path.dirname(path), os.W_OK)
    details = {
        "dialect": str(Dialect.SQLITE),
        "server_version": sqlite3.sqlite_version,
        "database": target.database,
        "current_user": None,
        "can_write": can_write,
        "can_write_reason": "the file and its folder are writable by the service"
        if can_write
        else "the file or its folder is not writable by the service",
        **found,
        "phases": {"probe_ms": ms_since(start)},
    }
    return ProbeOutcome(details=details, capabilities=capabilities(can_write, has_transactions=True))


# --- SQLite error mapping ---------------------------------------------------------------

_E = ErrorKind
_SQLITE_CODES: dict[int, ErrorKind] = {
    sqlite3.SQLITE_ERROR: _E.INVALID_CONFIG,  # an SQL error in the probe query
    sqlite3.SQLITE_INTERRUPT: _E.TIMEOUT,  # our progress handler stopped it at the deadline
    sqlite3.SQLITE_BUSY: _E.UNAVAILABLE,
    sqlite3.SQLITE_LOCKED: _E.UNAVAILABLE,
    sqlite3.SQLITE_CANTOPEN: _E.UNAVAILABLE,
    sqlite3.SQLITE_IOERR: _E.UNAVAILABLE,
    sqlite3.SQLITE_NOTADB: _E.PROTOCOL,
    sqlite3.SQLITE_CORRUPT: _E.PROTOCOL,
    sqlite3.SQLITE_READONLY: _E.INVALID_CONFIG,
    sqlite3.SQLITE_PERM: _E.AUTH,
    sqlite3.SQLITE_AUTH: _E.AUTH,
}


def map_sqlite_error(exc: BaseException) -> ProbeError:
    """A ``sqlite3`` error as a :class:`ProbeError` (by SQLite result code, then class)."""
    if isinstance(exc, ProbeError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    kind = _SQLITE_CODES.get(code & 0xFF) if isinstance(code, int) else None
    if kind is None:
        for cls, fallback in (
            (sqlite3.NotSupportedError, _E.UNSUPPORTED),
            (sqlite3.InternalError, _E.INTERNAL),
            (sqlite3.OperationalError, _E.UNAVAILABLE),
            (sqlite3.DatabaseError, _E.PROTOCOL),
            (sqlite3.Error, _E.INVALID_CONFIG),  # InterfaceError, ProgrammingError: the probe query
            (sqlite3.Warning, _E.INVALID_CONFIG),
        ):
            if isinstance(exc, cls):
                kind = fallback
                break
    if kind is None:
        return network_error(exc, "SQLite") or ProbeError(
            _E.INTERNAL, f"the SQLite probe failed ({type(exc).__name__})"
        )
    if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_TOOBIG:
        return ProbeError(
            _E.INVALID_CONFIG,
            f"a value of the probe query's result exceeds {MAX_PROBE_VALUE_BYTES // 2**20} MiB "
            "(the bound on a value's size)",
        )
    if "too many columns" in str(exc):
        return ProbeError(
            _E.INVALID_CONFIG,
            f"the probe query selects more than {MAX_PROBE_COLUMNS} columns (the bound on a row's width)",
        )
    if kind is _E.INVALID_CONFIG:
        return ProbeError(kind, f"the probe query failed: {summary(exc)}")
    if kind is _E.PROTOCOL:
        return ProbeError(kind, "the file is not a SQLite database (or it is damaged)")
    return ProbeError(kind, f"SQLite: {summary(exc)}")


# --- the type -------------------------------------------------------------------------


_PROBES: dict[Dialect, Callable[[ProbeContext, SqlConfig, Target], Awaitable[ProbeOutcome]]] = {
    Dialect.POSTGRESQL: probe_postgres,
    Dialect.MYSQL: probe_mysql,
    Dialect.SQLITE: _probe_sqlite,
}


class SqlType(ConnectorType):
    """PostgreSQL, MySQL/MariaDB and SQLite databases."""

    name: ClassVar[str] = "sql"
    description: ClassVar[str] = "PostgreSQL, MySQL/MariaDB and SQLite databases."
    endpoint: ClassVar[EndpointRule] = EndpointRule(
        schemes=("postgresql", "postgres", "mysql", "mariadb", "sqlite"),
        hostless=("sqlite",),
        bare=True,
        path=True,
        credentials=True,
        user_alone=True,
        driver_suffix=True,
    )
    config_model: ClassVar[type[ConnectorConfig]] = SqlConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = DEFAULT_CAPABILITIES

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Connect, authenticate, run the read-only probe query, report what the server is."""
        config = ctx.config
        assert isinstance(config, SqlConfig)
        target = resolve_target(ctx.endpoint, config)
        return await _PROBES[target.dialect](ctx, config, target)
