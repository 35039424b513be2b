"""How statements reach a database: one small executor interface, two drivers.

Statements are SQLAlchemy Core constructs compiled once per dialect; the
store's logic (``store/sql.py``) is written once against :class:`Executor`.
We skip SQLAlchemy's execution layer on the hot path because, measured on
this machine, a row read costs ~0.82 ms through SQLAlchemy async over
aiosqlite against ~0.24 ms through sqlite3 directly; asyncpg is used directly
for PostgreSQL for the same reason.

SQLite: reads run on the event loop thread on their own connection (a
primary-key read is tens of microseconds; WAL readers never wait on the
writer). Writes are group-committed: every write queued while a commit is in
flight joins the next transaction, each in its own SAVEPOINT (one failing
write does not undo the others), and each caller is answered only after the
``COMMIT`` (``synchronous=FULL``) returned, so a write that was acknowledged
is durable. ``BEGIN IMMEDIATE`` and ``COMMIT`` (which wait on other processes'
locks and on fsync, with the GIL released) run in a writer thread; the writes'
Python work stays on the loop thread. Running it in the writer thread made the
two threads fight for the GIL: bench/probes.py recorded 576-615 tests/s with
385-420 us of writer CPU per test, against 798-829 tests/s and 24 us now.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from connectord.errors import StoreError

T = TypeVar("T")
Row = Mapping[str, Any]


class UniqueViolationError(Exception):
    """A unique constraint refused a write (translated by the store)."""


class ForeignKeyViolationError(Exception):
    """A foreign key refused a write: the parent row is missing (translated by the store)."""


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled statement: its SQL text and the order of its parameters."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    #: Whether a parameter is a timestamp (SQLite stores them as ISO 8601 text).
    has_datetime: bool = False

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """Positional arguments for the driver (list comprehensions: this runs for
        every statement, and a generator into ``tuple`` cost twice as much)."""
        defaults = self.defaults
        return [params[n] if n in params else defaults[n] for n in self.names]


def compile_query(stmt: sa.sql.ClauseElement, dialect: Dialect) -> Query:
    """Compile a Core statement for one dialect, once."""
    compiled = stmt.compile(dialect=dialect)
    names = tuple(getattr(compiled, "positiontup", None) or ())
    binds = getattr(compiled, "binds", {})
    has_dt = any(isinstance(getattr(binds.get(n), "type", None), sa.DateTime) for n in names)
    return Query(str(compiled), names, dict(compiled.params), has_dt)


class Executor(abc.ABC):
    """Runs compiled queries on one connection."""

    @abc.abstractmethod
    async def one(self, q: Query, params: Mapping[str, Any]) -> Row | None:
        """The first row, or ``None``."""

    @abc.abstractmethod
    async def all(self, q: Query, params: Mapping[str, Any]) -> Sequence[Row]:
        """Every row."""

    @abc.abstractmethod
    async def run(self, q: Query, params: Mapping[str, Any]) -> int:
        """Execute; the number of rows changed."""


Operation = Callable[[Executor], Coroutine[Any, Any, T]]


class Backend(abc.ABC):
    """A database reached through one driver."""

    dialect: Dialect

    @abc.abstractmethod
    async def start(self) -> None:
        """Migrate and connect."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect."""

    @abc.abstractmethod
    def read(self, op: Operation[T]) -> Awaitable[T]:
        """Run a read-only operation."""

    @abc.abstractmethod
    def write(self, op: Operation[T]) -> Awaitable[T]:
        """Run an operation in a transaction; its changes are durable when this returns."""


# --- SQLite --------------------------------------------------------------------------


class SqliteExecutor(Executor):
    """sqlite3 calls behind the async interface; they never suspend."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _execute(self, q: Query, params: Mapping[str, Any]) -> sqlite3.Cursor:
        try:
            args = q.args(params)
            if q.has_datetime:
                args = [a.isoformat() if type(a) is datetime else a for a in args]
            return self.conn.execute(q.sql, args)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolationError(str(exc)) from None
            if "FOREIGN KEY" in str(exc):
                raise ForeignKeyViolationError(str(exc)) from None
            raise

    async def one(self, q: Query, params: Mapping[str, Any]) -> Row | None:
        row: Row | None = self._execute(q, params).fetchone()
        return row

    async def all(self, q: Query, params: Mapping[str, Any]) -> Sequence[Row]:
        rows: list[Row] = self._execute(q, params).fetchall()
        return rows

    async def run(self, q: Query, params: Mapping[str, Any]) -> int:
        return self._execute(q, params).rowcount


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a SQLite store operation tried to suspend; it must only use the executor")


def _connect_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite would (0644, less the umask): its -wal and
    -shm files take the database file's mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SqliteBackend(Backend):
    """The embedded store: a file, WAL, a writer thread with group commit."""

    def __init__(self, path: Path) -> None:
        from sqlalchemy.dialects.sqlite.pysqlite import dialect

        self.path = path
        self.dialect = dialect()
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="connectord-sqlite-writer")
        self._queue: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._flush_task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        from connectord.store.migrate import upgrade_sqlite

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _create_private(self.path)
        await asyncio.get_running_loop().run_in_executor(self._thread, upgrade_sqlite, self.path)
        self._writer = _connect_sqlite(self.path)
        self._reader = _connect_sqlite(self.path)
        self._reader.execute("PRAGMA query_only=ON")

    async def close(self) -> None:
        if self._flush_task is not None:
            await self._flush_task
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        self._thread.shutdown(wait=True)

    async def read(self, op: Operation[T]) -> T:
        if self._reader is None:
            raise StoreError("the store is not started")
        return await op(SqliteExecutor(self._reader))

    async def write(self, op: Operation[T]) -> T:
        if self._writer is None:
            raise StoreError("the store is not started")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if not self._flushing:
            self._flushing = True
            self._flush_task = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                # Only BEGIN and COMMIT go to the writer thread: they may wait (another
                # process's lock, fsync) and release the GIL while they do. The writes
                # themselves are Python work and run here, on the loop thread, rather
                # than competing with it for the GIL from another thread.
                try:
                    await loop.run_in_executor(self._thread, self._execute_alone, "BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    outcomes = [(False, StoreError(f"cannot start a write: {exc}"))] * len(batch)
                else:
                    outcomes = self._run_ops([op for op, _ in batch])
                    try:
                        await loop.run_in_executor(self._thread, self._execute_alone, "COMMIT")
                    except sqlite3.Error as exc:
                        self._execute_alone("ROLLBACK")
                        outcomes = [(False, StoreError(f"commit failed: {exc}"))] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.cancelled():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flushing = False

    def _execute_alone(self, sql: str) -> None:
        assert self._writer is not None
        self._writer.execute(sql)

    def _run_ops(self, ops: list[Operation[Any]]) -> list[tuple[bool, Any]]:
        """Each write in its own SAVEPOINT, so one failing leaves the others in the batch."""
        conn = self._writer
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        executor = SqliteExecutor(conn)
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                value = drive(op(executor))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's future
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE op")
                outcomes.append((True, value))
        return outcomes


# --- PostgreSQL ----------------------------------------------------------------------


class PgExecutor(Executor):
    """asyncpg behind the executor interface."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def one(self, q: Query, params: Mapping[str, Any]) -> Row | None:
        import asyncpg

        try:
            row: Row | None = await self.conn.fetchrow(q.sql, *q.args(params))
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolationError(str(exc)) from None
        except asyncpg.ForeignKeyViolationError as exc:
            raise ForeignKeyViolationError(str(exc)) from None
        return row

    async def all(self, q: Query, params: Mapping[str, Any]) -> Sequence[Row]:
        rows: Sequence[Row] = await self.conn.fetch(q.sql, *q.args(params))
        return rows

    async def run(self, q: Query, params: Mapping[str, Any]) -> int:
        import asyncpg

        try:
            status: str = await self.conn.execute(q.sql, *q.args(params))
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolationError(str(exc)) from None
        except asyncpg.ForeignKeyViolationError as exc:
            raise ForeignKeyViolationError(str(exc)) from None
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0


class PostgresBackend(Backend):
    """A shared PostgreSQL database through an asyncpg pool."""

    def __init__(self, url: str, *, timeout: float = 10.0, min_size: int = 2, max_size: int = 10) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        self.url = url
        self.dialect = dialect()  # type: ignore[no-untyped-call]
        #: Seconds any one operation may take, from waiting for a connection to its commit.
        self.timeout = timeout
        self._sizes = (min_size, max_size)
        self._pool: Any = None

    async def start(self) -> None:
        import asyncpg

        from connectord.store.migrate import upgrade_postgres

        try:
            await upgrade_postgres(self.url)
            self._pool = await asyncpg.create_pool(
                _asyncpg_dsn(self.url),
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                timeout=self.timeout,  # connecting
                command_timeout=self.timeout,  # each statement, cancelled on the server too
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot reach the PostgreSQL store: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def read(self, op: Operation[T]) -> T:
        return await self._bounded(op, transaction=False)

    async def write(self, op: Operation[T]) -> T:
        return await self._bounded(op, transaction=True)

    async def _bounded(self, op: Operation[T], *, transaction: bool) -> T:
        """Run ``op`` within :attr:`timeout`; a database that is down, restarting or too slow
        is a :class:`StoreError` (503) at once, never a hung request or a 500. A write cut by
        the bound is rolled back, so nothing that was not acknowledged is kept. The pool
        replaces broken connections by itself when the database returns."""
        import asyncpg

        if self._pool is None:
            raise StoreError("the store is not started")
        try:
            async with asyncio.timeout(self.timeout), self._pool.acquire() as conn:
                if not transaction:
                    return await op(PgExecutor(conn))
                async with conn.transaction():
                    return await op(PgExecutor(conn))
        except TimeoutError:
            raise StoreError(f"the PostgreSQL store did not answer within {self.timeout:g} s") from None
        except (
            OSError,
            asyncpg.InterfaceError,  # the connection is gone (closed under us, mid-query)
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,  # shutting down, not yet accepting
        ) as exc:
            raise StoreError(f"the PostgreSQL store is unreachable ({type(exc).__name__})") from None


def _asyncpg_dsn(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql{sep}{rest}" if scheme.startswith("postgres") else url
