"""Pieces the ``sql`` type's dialect modules share: enums, TLS, the time budget, network errors.

Private to ``connectord.types.sql`` and its ``_sql_*`` modules; it imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
import ssl
import time
from collections.abc import Awaitable
from typing import TypeVar

from connectord.model import Capability, ErrorKind
from connectord.network.tls import pinned_tls_context, tls_error
from connectord.plugin import ProbeError

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


DEFAULT_PORTS = {Dialect.POSTGRESQL: 5432, Dialect.MYSQL: 3306}

# The probe query's bounds (issue 9.5; ``docs/sql-probe.md``, "Bounds").
#: Rows: at most this many are counted (``probe_rows``); their values are never read.
MAX_PROBE_ROWS = 100
#: SQLite runs in our process: no value (string, blob, row record) may exceed this
#: (``SQLITE_LIMIT_LENGTH``), so ``randomblob(1000000000)`` fails instead of allocating.
MAX_PROBE_VALUE_BYTES = 1024 * 1024
#: SQLite: columns of any SELECT in the probe query (``SQLITE_LIMIT_COLUMN``): a row
#: SQLite holds is at most this many values of :data:`MAX_PROBE_VALUE_BYTES`.
MAX_PROBE_COLUMNS = 100
#: PostgreSQL: ``work_mem`` of the probe's transaction (PostgreSQL's own default), whatever
#: the login or server sets: a sort or hash of the probe query spills to disk past it.
PG_PROBE_WORK_MEM = "4MB"

#: SQL as ``check_probe_query`` and :func:`bounded_probe_query` read it: comments,
#: quoted text (also PostgreSQL's dollar quotes), words, ``;`` and anything else.
SQL_TOKENS = re.compile(
    r"""(?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
      | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\$(?P<tag>\w*)\$.*?\$(?P=tag)\$)
      | (?P<word>[A-Za-z_]\w*)
      | (?P<semi>;)
      | (?P<other>\S)""",
    re.VERBOSE | re.DOTALL,
)


def bounded_probe_query(query: str) -> str:
    """The probe query as it runs: its rows counted, their values never sent or read.

    The test only reports how many rows the query gives, so the database is
    asked for ``1`` per row, at most :data:`MAX_PROBE_ROWS`: a
    ``repeat('x', 300000000)`` or a ten-million-row result costs the server its
    own (time-bounded) work, and us nothing; the planners drop a subquery's
    unused columns, so most such values are not even computed. ``SHOW`` cannot
    be a subquery; it runs as it is (its answers are small). What follows the
    statement's ``;`` (comments only, ``check_probe_query`` sees to that) is cut,
    and the query sits on lines of its own, so a trailing ``--`` comment stays one.
    """
    text = query.strip()
    end = next((m.start() for m in SQL_TOKENS.finditer(text) if m.lastgroup == "semi"), len(text))
    text = text[:end].rstrip()
    if text.split(None, 1)[0].upper() == "SHOW":
        return text
    return f"SELECT 1 FROM (\n{text}\n) AS connectord_probe LIMIT {MAX_PROBE_ROWS}"


DEFAULT_CAPABILITIES = (Capability.READ, Capability.WRITE, Capability.QUERY, Capability.TRANSACTION)
# Garbage from a server that does not speak the protocol surfaces as parsing errors.
PARSE_ERRORS = (ValueError, IndexError, KeyError, EOFError, RuntimeError, UnicodeDecodeError)


class _CloseWithoutWaiting(ssl.SSLObject):
    """A TLS session whose close sends ``close_notify`` and does not wait for the server's.

    asyncio keeps the socket open until the server answers (up to 30 s,
    ``ssl_shutdown_timeout``) and neither driver lets us shorten that: after a
    failed login (asyncpg closes the TLS transport on the error) the socket was
    still open when the probe returned, an unclosed transport if the loop ended
    then, and a server that never answers held it 30 s. TLS lets the side that
    closes stop there (RFC 8446, section 6.1), so the socket closes at once.
    """

    def unwrap(self) -> None:
        """Send ``close_notify``; done, whether or not the server's has arrived."""
        # On SSLWantReadError ours is in the outgoing buffer, which asyncio sends before closing.
        with contextlib.suppress(ssl.SSLWantReadError):
            super().unwrap()


def tls_context(mode: SslMode, server_name: str, ca_pem: str | None) -> ssl.SSLContext | None:
    """The TLS context for a mode (``None`` for disable). Never reads files: no client certs."""
    if mode is SslMode.DISABLE:
        return None
    # libpq's prefer and require encrypt without verifying.
    ctx = pinned_tls_context(server_name, mode is SslMode.VERIFY_FULL, ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslobject_class = _CloseWithoutWaiting
    return ctx


def ms_since(since: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` reading, for ``details["phases"]``."""
    return round((time.perf_counter() - since) * 1000, 3)


class Deadline:
    """The probe's time budget, shared by every step."""

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left (never zero, so drivers still get a positive timeout)."""
        return max(self.end - time.monotonic(), 0.001)

    async def run(self, step: str, awaitable: Awaitable[T]) -> T:
        """Await within the time left; a :class:`ProbeError` (timeout) naming ``step`` if it runs out."""
        try:
            async with asyncio.timeout(self.left()):
                return await awaitable
        except TimeoutError as exc:
            raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {self.total:g} s ({step})") from exc


def summary(exc: BaseException, limit: int = 300) -> str:
    """An error's text on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def network_error(exc: BaseException, server: str) -> ProbeError | None:
    """Socket and TLS failures, found on the exception or what caused it."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, ProbeError):
            return seen
        tls = tls_error(seen)
        if tls is not None:
            return tls
        if isinstance(seen, TimeoutError):
            return ProbeError(ErrorKind.TIMEOUT, f"the {server} server did not answer in time")
        if isinstance(seen, ConnectionRefusedError):
            return ProbeError(ErrorKind.REFUSED, f"connection refused: no {server} server listens there")
        if isinstance(seen, ConnectionError) and "rejected SSL upgrade" in str(seen):
            return ProbeError(ErrorKind.TLS, f"the {server} server does not offer TLS (ssl_mode requires it)")
        if isinstance(seen, ConnectionError):
            return ProbeError(ErrorKind.UNAVAILABLE, f"the {server} server closed the connection")
        if type(seen) is OSError or isinstance(seen, BlockingIOError | InterruptedError):
            return ProbeError(ErrorKind.UNAVAILABLE, f"cannot connect: {seen.strerror or 'network error'}")
        seen = seen.__cause__
    return None


def capabilities(can_write: bool, has_transactions: bool) -> list[str]:
    """The type's capabilities less what this login or server lacks."""
    drop = set()
    if not can_write:
        drop.add(Capability.WRITE)
    if not has_transactions:
        drop.add(Capability.TRANSACTION)
    return [str(c) for c in DEFAULT_CAPABILITIES if c not in drop]
