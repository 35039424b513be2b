"""The ``sql`` type: PostgreSQL (asyncpg), MySQL/MariaDB (asyncmy) and SQLite databases.

The probe connects to the address the egress policy checked (never to the name
again; TLS still verifies the name), authenticates, runs the probe query in a
read-only transaction and reports the server version, the database, the
current user and whether that user can write (``docs/sql-probe.md``).

Public helpers other types reuse (pgvector in ``types/vector.py``); their
signatures are stable:

- ``await connect_postgres(ctx, host, port, database, user, *, ssl_mode=None, ca_pem=None)``
  resolves ``host`` through ``ctx.egress``, connects to the checked address
  with ``ctx.config.password`` and returns ``(asyncpg.Connection, phases)``
  (``resolve_ms``, ``connect_ms``). ``ssl_mode`` and ``ca_pem`` default to the
  config's fields of those names (``prefer`` and none). The caller closes the
  connection. Failures are :class:`ProbeError`.
- ``map_postgres_error(exc) -> ProbeError``: any asyncpg, TLS or socket error
  as an error kind with a tenant-safe message.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import os
import re
import sqlite3
import ssl
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, field_validator

from connectord.model import Capability, ErrorKind
from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome

if TYPE_CHECKING:
    import asyncpg

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
]

T = TypeVar("T")


class Dialect(enum.StrEnum):
    """The database family a ``sql`` connector speaks."""

    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    SQLITE = "sqlite"


class SslMode(enum.StrEnum):
    """libpq's TLS modes (``verify-ca`` is folded into ``verify-full``: the name is always checked)."""

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_FULL = "verify-full"


SCHEME_DIALECTS = {
    "postgresql": Dialect.POSTGRESQL,
    "postgres": Dialect.POSTGRESQL,
    "mysql": Dialect.MYSQL,
    "mariadb": Dialect.MYSQL,
    "sqlite": Dialect.SQLITE,
}
DEFAULT_PORTS = {Dialect.POSTGRESQL: 5432, Dialect.MYSQL: 3306}
MAX_PROBE_QUERY = 4000
MAX_PROBE_ROWS = 100

_READ_STARTS = {"SELECT", "SHOW", "VALUES", "WITH", "TABLE"}
# Words that make a read statement write: DML inside WITH, SELECT ... INTO, row locks.
_WRITE_WORDS = {"INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "INTO", "LOCK"}
_SQL_TOKENS = re.compile(
    r"""(?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
      | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\$(?P<tag>\w*)\$.*?\$(?P=tag)\$)
      | (?P<word>[A-Za-z_]\w*)
      | (?P<semi>;)
      | (?P<other>\S)""",
    re.VERBOSE | re.DOTALL,
)


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
    for match in _SQL_TOKENS.finditer(text):
        kind = match.lastgroup
        if kind == "comment" or (kind == "string" and not statement_ended):
            continue
        if statement_ended:
            raise ValueError("must be a single statement")
        if kind == "semi":
            statement_ended = True
        elif kind == "word":
            words.append(match.group().upper())
    if "/*" in _SQL_TOKENS.sub(lambda m: "" if m.lastgroup in {"comment", "string"} else m.group(), text):
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
    ca_pem: str | None = Field(
        default=None,
        max_length=65536,
        description="CA certificates (PEM text, not a path) trusted for verify-full; default: system CAs.",
    )

    @field_validator("probe_query")
    @classmethod
    def _read_only_query(cls, value: str) -> str:
        return check_probe_query(value)

    @field_validator("ca_pem")
    @classmethod
    def _pem_text(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----), not a file path")
        return value


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


class _NamedTLSContext(ssl.SSLContext):
    """A client context that verifies ``server_name`` whatever address the driver dialled.

    Drivers pass the host they connected to as ``server_hostname``; we hand them
    the checked IP address, so the name to verify (and send as SNI) is pinned here.
    """

    server_name: str

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def tls_context(mode: SslMode, server_name: str, ca_pem: str | None) -> ssl.SSLContext | None:
    """The TLS context for a mode (``None`` for disable). Never reads files: no client certs."""
    if mode is SslMode.DISABLE:
        return None
    ctx = _NamedTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = server_name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode is SslMode.VERIFY_FULL:
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem)
        else:
            ctx.load_default_certs()
    else:  # libpq's prefer and require encrypt without verifying
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


class _Deadline:
    """The probe's time budget, shared by every step."""

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.001)

    async def run(self, step: str, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.left()):
                return await awaitable
        except TimeoutError as exc:
            raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {self.total:g} s ({step})") from exc


# --- PostgreSQL -----------------------------------------------------------------------


async def connect_postgres(
    ctx: ProbeContext,
    host: str,
    port: int,
    database: str | None,
    user: str | None,
    *,
    ssl_mode: SslMode | str | None = None,
    ca_pem: str | None = None,
) -> tuple[asyncpg.Connection, dict[str, float]]:
    """Connect to PostgreSQL at the egress-checked address of ``host``; ``(connection, phases)``.

    Everything asyncpg would read from the environment (``PG*`` variables,
    ``~/.pgpass``, ``~/.postgresql/*`` certificates) is given explicitly instead.
    """
    return await _connect_postgres(ctx, host, port, database, user, ssl_mode, ca_pem, _Deadline(ctx.timeout))


async def _connect_postgres(
    ctx: ProbeContext,
    host: str,
    port: int,
    database: str | None,
    user: str | None,
    ssl_mode: SslMode | str | None,
    ca_pem: str | None,
    deadline: _Deadline,
) -> tuple[asyncpg.Connection, dict[str, float]]:
    import asyncpg

    if not user:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "a username is required (config username or user@host)")
    mode = SslMode(ssl_mode or getattr(ctx.config, "ssl_mode", None) or SslMode.PREFER)
    ca = ca_pem or getattr(ctx.config, "ca_pem", None)
    secret = ctx.config.password
    password = secret.get_secret_value() if secret is not None else ""  # "" so asyncpg never reads ~/.pgpass
    phases: dict[str, float] = {}
    start = time.perf_counter()
    destinations = await deadline.run("resolving", ctx.egress.resolve(host, port))
    phases["resolve_ms"] = _ms(start)
    start = time.perf_counter()

    async def attempt(address: str, tls: ssl.SSLContext | None) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=address,
            port=port,
            user=user,
            password=password,
            database=database or user,
            ssl=tls or False,
            timeout=deadline.left(),
            command_timeout=deadline.left(),
            statement_cache_size=0,
            server_settings={"application_name": "connectord-probe"},
        )

    last: BaseException | None = None
    for dest in destinations:
        try:
            try:
                conn = await deadline.run("connecting", attempt(dest.address, tls_context(mode, host, ca)))
            except ConnectionError as exc:
                if mode is not SslMode.PREFER or "rejected SSL upgrade" not in str(exc):
                    raise
                conn = await deadline.run("connecting", attempt(dest.address, None))
        except ProbeError:
            raise
        except Exception as exc:
            if not _try_next_address(exc):
                raise map_postgres_error(exc) from exc
            last = exc
            continue
        phases["connect_ms"] = _ms(start)
        return conn, phases
    assert last is not None
    raise map_postgres_error(last) from last


def _try_next_address(exc: BaseException) -> bool:
    """Refused or unreachable: another address of the same name may answer."""
    return isinstance(exc, ConnectionRefusedError) or (
        type(exc) is OSError and exc.errno in {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}
    )


_PG_INFO = """
SELECT current_setting('server_version') AS server_version,
       current_database() AS database,
       current_user AS current_user,
       pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only') = 'on' AS default_read_only,
       COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) AS superuser,
       has_database_privilege(current_database(), 'CREATE') AS create_in_database,
       COALESCE((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace
                 WHERE nspname = 'public'), false) AS create_in_public,
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'p', 'v', 'f')
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg\\_toast%'
                 AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
                      OR has_table_privilege(c.oid, 'DELETE'))) AS table_write,
       COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS tls
"""


def postgres_can_write(info: dict[str, Any]) -> tuple[bool, str]:
    """Whether the login can write, and why (the rule of ``docs/sql-probe.md``)."""
    if info["in_recovery"]:
        return False, "the server is a standby (in recovery)"
    if info["default_read_only"]:
        return False, "transactions are read-only by default (default_transaction_read_only)"
    if info["superuser"]:
        return True, "superuser"
    if info["create_in_database"] or info["create_in_public"]:
        return True, "may create objects in the database or the public schema"
    if info["table_write"]:
        return True, "may insert, update or delete in at least one table"
    return False, "no CREATE privilege and no table it may insert into, update or delete from"


async def _probe_postgres(ctx: ProbeContext, config: SqlConfig, target: Target) -> ProbeOutcome:
    deadline = _Deadline(ctx.timeout)
    assert target.host is not None
    assert target.port is not None
    conn, phases = await _connect_postgres(
        ctx, target.host, target.port, target.database, target.user, config.ssl_mode, config.ca_pem, deadline
    )
    try:
        start = time.perf_counter()
        try:
            async with conn.transaction(readonly=True):
                rows = await deadline.run("running the probe query", conn.fetch(config.probe_query))
                row = await deadline.run("reading server details", conn.fetchrow(_PG_INFO))
        except ProbeError:
            raise
        except Exception as exc:
            raise map_postgres_error(exc) from exc
        phases["probe_ms"] = _ms(start)
        info = dict(row) if row is not None else {}
        can_write, reason = postgres_can_write(info)
        details = {
            "dialect": str(Dialect.POSTGRESQL),
            "server_version": info["server_version"],
            "database": info["database"],
            "current_user": info["current_user"],
            "can_write": can_write,
            "can_write_reason": reason,
            "tls": info["tls"],
            "probe_rows": len(rows),
            "phases": phases,
        }
        return ProbeOutcome(details=details, capabilities=_capabilities(can_write, has_transactions=True))
    finally:
        await _close_postgres(conn)


async def _close_postgres(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 1.0)
    except Exception:  # noqa: BLE001 - the result is known; a slow goodbye must not change it
        conn.terminate()


# --- MySQL / MariaDB ------------------------------------------------------------------

_GRANT_LINE = re.compile(r"^GRANT (?P<privs>.+?) ON (?P<target>\S+) TO ", re.IGNORECASE)
_WRITE_PRIVILEGES = {"ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER"}


def mysql_can_write(read_only: bool, grants: list[str]) -> tuple[bool, str]:
    """Whether the login can write, from ``@@read_only`` and ``SHOW GRANTS`` (``docs/sql-probe.md``)."""
    if read_only:
        return False, "the server is read-only (@@read_only)"
    for line in grants:
        match = _GRANT_LINE.match(line)
        if match is None:
            continue  # a role grant ("GRANT role TO user") carries no privilege list
        privileges = {p.strip().split("(", 1)[0].strip().upper() for p in match["privs"].split(",")}
        found = privileges & _WRITE_PRIVILEGES
        if found:
            return True, f"{sorted(found)[0]} on {match['target']}"
    return False, "no INSERT, UPDATE, DELETE, CREATE, DROP, ALTER or ALL privilege granted"


async def _connect_mysql(
    config: SqlConfig, target: Target, address: str, tls: ssl.SSLContext | None, deadline: _Deadline
) -> Any:
    import asyncmy
    from asyncmy.constants.CLIENT import MULTI_STATEMENTS

    connection_class: Any = asyncmy.Connection  # its stubs leave __init__ untyped

    secret = config.password
    conn = connection_class(
        host=address,
        port=target.port or DEFAULT_PORTS[Dialect.MYSQL],
        user=target.user,
        password=secret.get_secret_value() if secret is not None else "",
        database=target.database,
        connect_timeout=deadline.left(),
        read_timeout=deadline.left(),
        autocommit=True,
        local_infile=False,
        ssl=tls,
        program_name="connectord-probe",
    )
    # asyncmy always asks for multi-statements; one statement per call is all a probe needs.
    conn._client_flag &= ~MULTI_STATEMENTS
    await deadline.run("connecting", conn.connect())
    return conn


async def _probe_mysql(ctx: ProbeContext, config: SqlConfig, target: Target) -> ProbeOutcome:
    deadline = _Deadline(ctx.timeout)
    assert target.host is not None
    assert target.port is not None
    if not target.user:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "a username is required (config username or user@host)")
    phases: dict[str, float] = {}
    start = time.perf_counter()
    destinations = await deadline.run("resolving", ctx.egress.resolve(target.host, target.port))
    phases["resolve_ms"] = _ms(start)
    start = time.perf_counter()
    tls = tls_context(config.ssl_mode, target.host, config.ca_pem)
    address = destinations[0].address
    try:
        try:
            conn = await _connect_mysql(config, target, address, tls, deadline)
        except Exception as exc:
            if config.ssl_mode is not SslMode.PREFER or not _tls_unavailable(exc):
                raise
            conn = await _connect_mysql(config, target, address, None, deadline)
    except ProbeError:
        raise
    except Exception as exc:
        raise map_mysql_error(exc) from exc
    phases["connect_ms"] = _ms(start)
    try:
        start = time.perf_counter()
        try:
            details = await _mysql_queries(conn, config, deadline)
        except ProbeError:
            raise
        except Exception as exc:
            raise map_mysql_error(exc) from exc
        phases["probe_ms"] = _ms(start)
    finally:
        conn.close()
    details["phases"] = phases
    has_tx = details.pop("has_transactions")
    return ProbeOutcome(details=details, capabilities=_capabilities(details["can_write"], has_tx))


def _tls_unavailable(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError | ConnectionResetError)


async def _mysql_queries(conn: Any, config: SqlConfig, deadline: _Deadline) -> dict[str, Any]:
    async def query(sql: str, step: str) -> list[Any]:
        async with conn.cursor() as cur:
            await deadline.run(step, cur.execute(sql))
            return list(await deadline.run(step, cur.fetchmany(MAX_PROBE_ROWS)) or [])

    # On a failure the connection is closed, which ends the transaction on the server.
    await query("START TRANSACTION READ ONLY", "starting a read-only transaction")
    rows = await query(config.probe_query, "running the probe query")
    (version, database, user, read_only), *_ = await query(
        "SELECT VERSION(), DATABASE(), CURRENT_USER(), @@read_only", "reading server details"
    )
    grants = [str(r[0]) for r in await query("SHOW GRANTS FOR CURRENT_USER()", "reading grants")]
    engines = await query(
        "SELECT SUPPORT FROM information_schema.ENGINES WHERE TRANSACTIONS = 'YES' "
        "AND SUPPORT IN ('YES', 'DEFAULT')",
        "reading engines",
    )
    await query("ROLLBACK", "ending the transaction")
    can_write, reason = mysql_can_write(bool(int(read_only)), grants)
    return {
        "dialect": str(Dialect.MYSQL),
        "server_version": str(version),
        "database": database,
        "current_user": str(user),
        "can_write": can_write,
        "can_write_reason": reason,
        "tls": conn._transport.get_extra_info("ssl_object") is not None,  # asyncmy has no public accessor
        "probe_rows": len(rows),
        "has_transactions": bool(engines),
    }


# --- SQLite ---------------------------------------------------------------------------


def sqlite_path(raw: str | None, roots: tuple[str, ...]) -> str:
    """The real path of a SQLite file inside a configured root.

    Outside every root (also through ``..`` or a symlink) is ``egress_denied``;
    inside but missing is ``not_found``. Roots are checked first, so a probe
    cannot learn whether a file outside them exists.
    """
    if not raw:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the SQLite file path is required (sqlite:///path)")
    if not os.path.isabs(raw):
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the SQLite file path must be absolute")
    if not roots:
        raise ProbeError(
            ErrorKind.EGRESS_DENIED, "file policy: no file roots are configured (CONNECTORD_FILE_ROOTS)"
        )
    real = os.path.realpath(raw)
    real_roots = [os.path.realpath(r) for r in roots]
    if not any(os.path.commonpath([real, root]) == root for root in real_roots):
        raise ProbeError(
            ErrorKind.EGRESS_DENIED,
            "file policy: the path is outside the configured file roots (CONNECTORD_FILE_ROOTS)",
        )
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
        conn.execute("PRAGMA query_only = ON")
        conn.execute("BEGIN")
        rows = conn.execute(probe_query).fetchmany(MAX_PROBE_ROWS)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # the file really is a database
        conn.rollback()
    finally:
        conn.close()
    return {"probe_rows": len(rows)}


async def _probe_sqlite(ctx: ProbeContext, config: SqlConfig, target: Target) -> ProbeOutcome:
    path = sqlite_path(target.database, ctx.file_roots)
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
        "phases": {"probe_ms": _ms(start)},
    }
    return ProbeOutcome(details=details, capabilities=_capabilities(can_write, has_transactions=True))


# --- error mapping: one function per driver ---------------------------------------------

_E = ErrorKind
_PG_STATES: dict[str, ErrorKind] = {
    "3D000": _E.NOT_FOUND,  # invalid_catalog_name: no such database
    "3F000": _E.NOT_FOUND,  # invalid_schema_name
    "42501": _E.AUTH,  # insufficient_privilege
    "08P01": _E.PROTOCOL,  # protocol_violation
    "57014": _E.TIMEOUT,  # query_canceled (statement_timeout)
    "55P03": _E.TIMEOUT,  # lock_not_available (lock_timeout)
}
# By SQLSTATE class; anything else the server reports is "unavailable".
_PG_CLASSES: dict[str, ErrorKind] = {
    "28": _E.AUTH,  # invalid authorization: bad password, pg_hba refusal
    "08": _E.UNAVAILABLE,  # connection exceptions
    "53": _E.UNAVAILABLE,  # insufficient resources (too many connections)
    "57": _E.UNAVAILABLE,  # operator intervention (shutdown, cannot connect now)
    "58": _E.UNAVAILABLE,  # system error
    "XX": _E.UNAVAILABLE,  # internal error
    "0A": _E.UNSUPPORTED,  # feature not supported
    "01": _E.PROTOCOL,  # warnings are never raised; if one is, the exchange went wrong
    "02": _E.PROTOCOL,
    # The probe query failed: syntax, data, a write refused by the read-only transaction...
    **dict.fromkeys(["09", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22", "23", "24", "25", "26", "27", "2B",
                     "2D", "2F", "34", "38", "39", "3B", "40", "42", "44", "54", "55", "72", "HV", "P0"],
                    _E.INVALID_CONFIG),
}  # fmt: skip
_MYSQL_ERRNOS: dict[int, ErrorKind] = {
    **dict.fromkeys([1044, 1045, 1130, 1131, 1132, 1133, 1142, 1143, 1227, 1251, 1370, 1698, 1820, 1862, 3118,
                     4151], _E.AUTH),  # access denied, account locked, password expired
    1049: _E.NOT_FOUND,  # unknown database
    # 2003 is "cannot connect": the socket error in __cause__ says more when there is one.
    **dict.fromkeys([1040, 1053, 1129, 1203, 2002, 2003, 2006, 2013, 2055], _E.UNAVAILABLE),
    2005: _E.DNS,
    2026: _E.TLS,
    **dict.fromkeys([1205, 1317, 1969, 3024], _E.TIMEOUT),  # lock wait, interrupted, max statement time
    **dict.fromkeys([1047, 2027, 2047], _E.PROTOCOL),
    **dict.fromkeys([1235, 1295], _E.UNSUPPORTED),
    **dict.fromkeys([1046, 1054, 1064, 1065, 1146, 1290, 1305, 1792], _E.INVALID_CONFIG),  # the probe query
}  # fmt: skip
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
# Garbage from a server that does not speak the protocol surfaces as parsing errors.
_PARSE_ERRORS = (ValueError, IndexError, KeyError, EOFError, RuntimeError, UnicodeDecodeError)


def _summary(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _network_error(exc: BaseException, server: str) -> ProbeError | None:
    """Socket and TLS failures, found on the exception or what caused it."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, ProbeError):
            return seen
        if isinstance(seen, ssl.SSLCertVerificationError):
            return ProbeError(_E.TLS, f"TLS certificate verification failed: {seen.verify_message}")
        if isinstance(seen, ssl.SSLError):
            return ProbeError(_E.TLS, f"TLS handshake failed: {getattr(seen, 'reason', None) or 'error'}")
        if isinstance(seen, TimeoutError):
            return ProbeError(_E.TIMEOUT, f"the {server} server did not answer in time")
        if isinstance(seen, ConnectionRefusedError):
            return ProbeError(_E.REFUSED, f"connection refused: no {server} server listens there")
        if isinstance(seen, ConnectionError) and "rejected SSL upgrade" in str(seen):
            return ProbeError(_E.TLS, f"the {server} server does not offer TLS (ssl_mode requires it)")
        if isinstance(seen, ConnectionError):
            return ProbeError(_E.UNAVAILABLE, f"the {server} server closed the connection")
        if type(seen) is OSError or isinstance(seen, BlockingIOError | InterruptedError):
            return ProbeError(_E.UNAVAILABLE, f"cannot connect: {seen.strerror or 'network error'}")
        seen = seen.__cause__
    return None


def map_postgres_error(exc: BaseException) -> ProbeError:
    """An asyncpg, TLS or socket error as a :class:`ProbeError` (by SQLSTATE for server errors)."""
    import asyncpg.exceptions as pg

    found = _network_error(exc, "PostgreSQL")
    if found is not None:
        return found
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, pg.PostgresError | pg.PostgresLogMessage) or state:
        state = str(state or "")
        kind = _PG_STATES.get(state) or _PG_CLASSES.get(state[:2], _E.UNAVAILABLE)
        if kind is _E.INVALID_CONFIG:
            return ProbeError(kind, f"the probe query failed ({state}): {_summary(exc)}")
        return ProbeError(kind, f"PostgreSQL refused ({state or 'error'}): {_summary(exc)}")
    if isinstance(exc, pg.ClientConfigurationError | pg.DataError):
        return ProbeError(_E.INVALID_CONFIG, f"invalid connection settings: {_summary(exc)}")
    if isinstance(exc, pg.UnsupportedClientFeatureError | pg.UnsupportedServerFeatureError):
        return ProbeError(_E.UNSUPPORTED, f"unsupported by the server or driver: {_summary(exc)}")
    if isinstance(exc, pg.TargetServerAttributeNotMatched):
        return ProbeError(_E.UNAVAILABLE, "the server is not in the requested state")
    if isinstance(exc, (pg.ProtocolError, pg.InterfaceError, pg.InterfaceWarning, *_PARSE_ERRORS)):
        return ProbeError(_E.PROTOCOL, "unexpected answer: is this a PostgreSQL server?")
    return ProbeError(_E.INTERNAL, f"the PostgreSQL probe failed ({type(exc).__name__})")


def map_mysql_error(exc: BaseException) -> ProbeError:
    """An asyncmy, TLS or socket error as a :class:`ProbeError` (by error number, then class)."""
    from asyncmy import errors as my

    if isinstance(exc, my.MySQLError) and exc.args and isinstance(exc.args[0], int):
        code: int = exc.args[0]
        if code in {2003, 2013}:
            found = _network_error(exc.__cause__, "MySQL") if exc.__cause__ else None
            if found is not None:
                return found
        kind = _MYSQL_ERRNOS.get(code)
        if kind is not None:
            text = _summary(exc.args[1] if len(exc.args) > 1 else exc)
            if kind is _E.INVALID_CONFIG:
                return ProbeError(kind, f"the probe query failed ({code}): {text}")
            return ProbeError(kind, f"MySQL refused ({code}): {text}")
    found = _network_error(exc, "MySQL")
    if found is not None:
        return found
    for cls, kind in (
        (my.NotSupportedError, _E.UNSUPPORTED),
        (my.ProgrammingError, _E.INVALID_CONFIG),
        (my.DataError, _E.INVALID_CONFIG),
        (my.IntegrityError, _E.INVALID_CONFIG),
        (my.OperationalError, _E.UNAVAILABLE),
        (my.InternalError, _E.UNAVAILABLE),
        (my.DatabaseError, _E.UNAVAILABLE),
        (my.InterfaceError, _E.PROTOCOL),
        (my.MySQLError, _E.PROTOCOL),
    ):
        if isinstance(exc, cls):
            return ProbeError(kind, f"MySQL error: {_summary(exc)}")
    if isinstance(exc, _PARSE_ERRORS):
        return ProbeError(_E.PROTOCOL, "unexpected answer: is this a MySQL or MariaDB server?")
    return ProbeError(_E.INTERNAL, f"the MySQL probe failed ({type(exc).__name__})")


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
        return _network_error(exc, "SQLite") or ProbeError(
            _E.INTERNAL, f"the SQLite probe failed ({type(exc).__name__})"
        )
    if kind is _E.INVALID_CONFIG:
        return ProbeError(kind, f"the probe query failed: {_summary(exc)}")
    if kind is _E.PROTOCOL:
        return ProbeError(kind, "the file is not a SQLite database (or it is damaged)")
    return ProbeError(kind, f"SQLite: {_summary(exc)}")


# --- the type -------------------------------------------------------------------------


def _capabilities(can_write: bool, has_transactions: bool) -> list[str]:
    drop = set()
    if not can_write:
        drop.add(Capability.WRITE)
    if not has_transactions:
        drop.add(Capability.TRANSACTION)
    return [str(c) for c in SqlType.default_capabilities if c not in drop]


_PROBES: dict[Dialect, Callable[[ProbeContext, SqlConfig, Target], Awaitable[ProbeOutcome]]] = {
    Dialect.POSTGRESQL: _probe_postgres,
    Dialect.MYSQL: _probe_mysql,
    Dialect.SQLITE: _probe_sqlite,
}


class SqlType(ConnectorType):
    """PostgreSQL, MySQL/MariaDB and SQLite databases."""

    name: ClassVar[str] = "sql"
    description: ClassVar[str] = "PostgreSQL, MySQL/MariaDB and SQLite databases."
    config_model: ClassVar[type[ConnectorConfig]] = SqlConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.QUERY,
        Capability.TRANSACTION,
    )

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Connect, authenticate, run the read-only probe query, report what the server is."""
        config = ctx.config
        assert isinstance(config, SqlConfig)
        target = resolve_target(ctx.endpoint, config)
        return await _PROBES[target.dialect](ctx, config, target)
