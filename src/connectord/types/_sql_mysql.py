"""The ``sql`` type's MySQL and MariaDB probe (asyncmy) and its error mapping.

``map_mysql_error`` and ``mysql_can_write`` are public through
``connectord.types.sql``; import them from there.
"""

from __future__ import annotations

import re
import ssl
import time
from typing import TYPE_CHECKING, Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeContext, ProbeError, ProbeOutcome
from connectord.types._sql_common import (
    DEFAULT_PORTS,
    MAX_PROBE_ROWS,
    PARSE_ERRORS,
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
    # For annotations only: sql.py imports this module, so nothing from it is imported at run time.
    from connectord.types.sql import SqlConfig, Target

# A derived table's columns must have distinct names on MySQL and MariaDB (not on PostgreSQL).
_DUPLICATE_COLUMN = 1060
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
    config: SqlConfig, target: Target, address: str, tls: ssl.SSLContext | None, deadline: Deadline
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


async def probe_mysql(ctx: ProbeContext, config: SqlConfig, target: Target) -> ProbeOutcome:
    """The ``sql`` probe for MySQL or MariaDB: connect, run the probe query read-only, report the server."""
    deadline = Deadline(ctx.timeout)
    assert target.host is not None
    assert target.port is not None
    if not target.user:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "a username is required (config username or user@host)")
    phases: dict[str, float] = {}
    start = time.perf_counter()
    destinations = await deadline.run("resolving", ctx.network.resolve(target.host, target.port))
    phases["resolve_ms"] = ms_since(start)
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
    phases["connect_ms"] = ms_since(start)
    try:
        start = time.perf_counter()
        try:
            details = await _mysql_queries(conn, config, deadline)
        except ProbeError:
            raise
        except Exception as exc:
            raise map_mysql_error(exc) from exc
        phases["probe_ms"] = ms_since(start)
    finally:
        conn.close()
    details["phases"] = phases
    has_tx = details.pop("has_transactions")
    return ProbeOutcome(details=details, capabilities=capabilities(details["can_write"], has_tx))


def _tls_unavailable(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError | ConnectionResetError)


async def _mysql_queries(conn: Any, config: SqlConfig, deadline: Deadline) -> dict[str, Any]:
    from asyncmy import errors as my

    async def query(sql: str, step: str) -> list[Any]:
        async with conn.cursor() as cur:
            await deadline.run(step, cur.execute(sql))
            return list(await deadline.run(step, cur.fetchmany(MAX_PROBE_ROWS)) or [])

    # The server stops the query at the deadline too (MariaDB: seconds; MySQL: ms, SELECT only).
    seconds = max(0.001, deadline.left())
    try:
        await query(f"SET SESSION max_statement_time = {seconds:.3f}", "bounding the probe query")
    except Exception:  # noqa: BLE001 - not MariaDB: MySQL's variable instead
        await query(f"SET SESSION max_execution_time = {int(seconds * 1000)}", "bounding the probe query")
    # On a failure the connection is closed, which ends the transaction on the server.
    await query("START TRANSACTION READ ONLY", "starting a read-only transaction")
    try:
        rows = await query(bounded_probe_query(config.probe_query), "running the probe query")
    except my.MySQLError as exc:
        if exc.args and exc.args[0] == _DUPLICATE_COLUMN:
            raise ProbeError(
                ErrorKind.INVALID_CONFIG,
                "the probe query's columns need distinct names (give them with AS): it runs as a "
                f"subquery, so that only its row count is read ({summary(exc.args[-1])})",
            ) from exc
        raise
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


# --- error mapping ----------------------------------------------------------------------

_E = ErrorKind
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


def map_mysql_error(exc: BaseException) -> ProbeError:
    """An asyncmy, TLS or socket error as a :class:`ProbeError` (by error number, then class)."""
    from asyncmy import errors as my

    if isinstance(exc, my.MySQLError) and exc.args and isinstance(exc.args[0], int):
        code: int = exc.args[0]
        if code in {2003, 2013}:
            found = network_error(exc.__cause__, "MySQL") if exc.__cause__ else None
            if found is not None:
                return found
        kind = _MYSQL_ERRNOS.get(code)
        if kind is not None:
            text = summary(exc.args[1] if len(exc.args) > 1 else exc)
            if kind is _E.INVALID_CONFIG:
                return ProbeError(kind, f"the probe query failed ({code}): {text}")
            return ProbeError(kind, f"MySQL refused ({code}): {text}")
    found = network_error(exc, "MySQL")
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
            return ProbeError(kind, f"MySQL error: {summary(exc)}")
    if isinstance(exc, PARSE_ERRORS):
        return ProbeError(_E.PROTOCOL, "unexpected answer: is this a MySQL or MariaDB server?")
    return ProbeError(_E.INTERNAL, f"the MySQL probe failed ({type(exc).__name__})")
