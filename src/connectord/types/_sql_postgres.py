"""The ``sql`` type's PostgreSQL probe (asyncpg) and its error mapping.

``connect_postgres`` and ``map_postgres_error`` are public through
``connectord.types.sql``; import them from there.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
import time
from typing import TYPE_CHECKING, Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeContext, ProbeError, ProbeOutcome
from connectord.types._sql_common import (
    PARSE_ERRORS,
    PG_PROBE_WORK_MEM,
    Deadline,
    Dialect,
    SslMode,
    bounded_probe_query,
    capabilities,
    ms_since,
    network_error,
    summary,
    tls_context,
)

if TYPE_CHECKING:
    import asyncpg

    # For annotations only: sql.py imports this module, so nothing from it is imported at run time.
    from connectord.types.sql import SqlConfig, Target


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
    return await _connect_postgres(ctx, host, port, database, user, ssl_mode, ca_pem, Deadline(ctx.timeout))


async def _connect_postgres(
    ctx: ProbeContext,
    host: str,
    port: int,
    database: str | None,
    user: str | None,
    ssl_mode: SslMode | str | None,
    ca_pem: str | None,
    deadline: Deadline,
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
    destinations = await deadline.run("resolving", ctx.network.resolve(host, port))
    phases["resolve_ms"] = ms_since(start)
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
        phases["connect_ms"] = ms_since(start)
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


async def probe_postgres(ctx: ProbeContext, config: SqlConfig, target: Target) -> ProbeOutcome:
    """The ``sql`` probe for PostgreSQL: connect, run the probe query read-only, report the server."""
    deadline = Deadline(ctx.timeout)
    assert target.host is not None
    assert target.port is not None
    conn, phases = await _connect_postgres(
        ctx, target.host, target.port, target.database, target.user, config.ssl_mode, config.ca_pem, deadline
    )
    try:
        start = time.perf_counter()
        try:
            async with conn.transaction(readonly=True):
                # The server stops the query at the deadline too, not only our side; its sorts
                # and hashes spill to disk past work_mem rather than grow (a login may raise it).
                timeout_ms = max(1, int(deadline.left() * 1000))
                await conn.execute(
                    f"SET LOCAL statement_timeout = {timeout_ms}; SET LOCAL work_mem = '{PG_PROBE_WORK_MEM}'"
                )
                rows = await deadline.run(
                    "running the probe query", conn.fetch(bounded_probe_query(config.probe_query))
                )
                row = await deadline.run("reading server details", conn.fetchrow(_PG_INFO))
        except ProbeError:
            raise
        except Exception as exc:
            raise map_postgres_error(exc) from exc
        phases["probe_ms"] = ms_since(start)
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
        return ProbeOutcome(details=details, capabilities=capabilities(can_write, has_transactions=True))
    finally:
        await _close_postgres(conn)


async def _close_postgres(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 1.0)
    except Exception:  # noqa: BLE001 - the result is known; a slow goodbye must not change it
        conn.terminate()


# --- error mapping ----------------------------------------------------------------------

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


def map_postgres_error(exc: BaseException) -> ProbeError:
    """An asyncpg, TLS or socket error as a :class:`ProbeError` (by SQLSTATE for server errors)."""
    import asyncpg.exceptions as pg

    found = network_error(exc, "PostgreSQL")
    if found is not None:
        return found
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, pg.PostgresError | pg.PostgresLogMessage) or state:
        state = str(state or "")
        kind = _PG_STATES.get(state) or _PG_CLASSES.get(state[:2], _E.UNAVAILABLE)
        if kind is _E.INVALID_CONFIG:
            return ProbeError(kind, f"the probe query failed ({state}): {summary(exc)}")
        return ProbeError(kind, f"PostgreSQL refused ({state or 'error'}): {summary(exc)}")
    if isinstance(exc, pg.ClientConfigurationError | pg.DataError):
        return ProbeError(_E.INVALID_CONFIG, f"invalid connection settings: {summary(exc)}")
    if isinstance(exc, pg.UnsupportedClientFeatureError | pg.UnsupportedServerFeatureError):
        return ProbeError(_E.UNSUPPORTED, f"unsupported by the server or driver: {summary(exc)}")
    if isinstance(exc, pg.TargetServerAttributeNotMatched):
        return ProbeError(_E.UNAVAILABLE, "the server is not in the requested state")
    if isinstance(exc, (pg.ProtocolError, pg.InterfaceError, pg.InterfaceWarning, *PARSE_ERRORS)):
        return ProbeError(_E.PROTOCOL, "unexpected answer: is this a PostgreSQL server?")
    return ProbeError(_E.INTERNAL, f"the PostgreSQL probe failed ({type(exc).__name__})")
