"""The sql probe query's bounds (issue 9, item 5): value size, row count, row width and time.

Against the same real servers as ``test_sql.py`` (a PostgreSQL and a MariaDB it
starts, SQLite files under a root). Memory is measured as the growth of this
process's resident size while a probe runs; every query here would grow it by
300 MB or more, or run for ever, without the bound it tests.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connectord.model import ErrorKind
from connectord.types._sql_common import MAX_PROBE_COLUMNS, MAX_PROBE_ROWS
from tests.types import test_sql as shared
from tests.types.test_sql import PG_PASSWORD, Db, probe, probe_error

# The servers and files of test_sql.py, as fixtures of this module too.
pg_ca, pg_peer, maria_peer, db, sqlite_files = (
    shared.pg_ca,
    shared.pg_peer,
    shared.maria_peer,
    shared.db,
    shared.sqlite_files,
)

MIB = 2**20
#: A bounded probe grows this process by a few MiB; an unbounded one by 300 MiB or more.
GROWTH_LIMIT = 100 * MIB


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """The largest growth of this process's resident memory while the block runs (bytes).

    What earlier tests freed is handed back to the system first: glibc keeps freed
    memory resident, and a block that reuses it would not grow the process at all.
    """
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss() - base)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], rss() - base)


def assert_small(grown: list[int]) -> None:
    assert grown[0] < GROWTH_LIMIT, f"grew {grown[0] / MIB:.0f} MiB"


def server_probe(db: Db, query: str) -> tuple[str, dict[str, object]]:
    return db.endpoint(db.admin[0]), {"password": db.admin[1], "probe_query": query}


def sqlite_url(files: dict[str, Path]) -> str:
    return f"sqlite:///{files['db']}"


def roots(files: dict[str, Path]) -> tuple[str, ...]:
    return (str(files["root"]),)


# --- values -----------------------------------------------------------------------------------

HUGE_VALUES = {  # one value of 300 MB (MariaDB caps one at max_allowed_packet: 30 of 10 MB)
    "postgresql": "SELECT repeat('x', 300000000)",
    "mysql": "SELECT repeat('x', 10000000) FROM seq_1_to_30",
}


async def test_huge_values_never_reach_the_service(db: Db) -> None:
    with peak_rss_growth() as grown:
        outcome = await probe(*server_probe(db, HUGE_VALUES[db.dialect]), timeout=20)
    assert outcome.details["probe_rows"] == (1 if db.dialect == "postgresql" else 30)
    assert_small(grown)


async def test_many_big_values_never_reach_the_service(db: Db) -> None:
    query = {
        "postgresql": "SELECT repeat('x', 1000000) FROM generate_series(1, 300)",
        "mysql": "SELECT repeat('x', 1000000) FROM seq_1_to_300",
    }[db.dialect]
    with peak_rss_growth() as grown:
        outcome = await probe(*server_probe(db, query))
    assert outcome.details["probe_rows"] == MAX_PROBE_ROWS
    assert_small(grown)


async def test_a_huge_sqlite_value_is_refused_not_allocated(sqlite_files: dict[str, Path]) -> None:
    with peak_rss_growth() as grown:
        error = await probe_error(
            sqlite_url(sqlite_files),
            {"probe_query": "SELECT randomblob(1000000000)"},
            roots=roots(sqlite_files),
        )
    assert error.kind is ErrorKind.INVALID_CONFIG
    assert "a value of the probe query's result exceeds 1 MiB" in error.message
    assert_small(grown)


async def test_wide_sqlite_rows_are_not_pulled(sqlite_files: dict[str, Path]) -> None:
    """100 rows of 60 values of 1 MB: 6 GB for a client that holds the rows it fetched."""
    columns = ", ".join(f"b{i}.x" for i in range(60))
    tables = ", ".join(f"b b{i}" for i in range(60))
    query = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000), "
        f"b(x) AS MATERIALIZED (SELECT randomblob(1000000)) SELECT {columns} FROM r, {tables}"
    )
    with peak_rss_growth() as grown:
        outcome = await probe(sqlite_url(sqlite_files), {"probe_query": query}, roots=roots(sqlite_files))
    assert outcome.details["probe_rows"] == MAX_PROBE_ROWS
    assert_small(grown)


async def test_too_many_sqlite_columns_are_refused(sqlite_files: dict[str, Path]) -> None:
    """SQLite holds a row's values while it makes the next (LIMIT keeps the subquery apart):
    300 copies of a 1 MB value are 300 MB however few rows come out."""
    query = "WITH b(x) AS MATERIALIZED (SELECT randomblob(1000000)) SELECT " + ", ".join(["x"] * 300)
    with peak_rss_growth() as grown:
        error = await probe_error(
            sqlite_url(sqlite_files), {"probe_query": query + " FROM b LIMIT 5"}, roots=roots(sqlite_files)
        )
    assert error.kind is ErrorKind.INVALID_CONFIG
    assert f"more than {MAX_PROBE_COLUMNS} columns" in error.message
    assert_small(grown)


async def test_sqlite_tables_wider_than_the_bound_stay_readable(sqlite_files: dict[str, Path]) -> None:
    import sqlite3

    wide = ", ".join(f"c{i} int" for i in range(MAX_PROBE_COLUMNS + 50))
    with sqlite3.connect(sqlite_files["db"]) as conn:
        conn.execute(f"CREATE TABLE wide ({wide})")
        conn.execute("INSERT INTO wide (c0) VALUES (1)")
    conn.close()
    outcome = await probe(
        sqlite_url(sqlite_files), {"probe_query": "SELECT c0, c149 FROM wide"}, roots=roots(sqlite_files)
    )
    assert outcome.details["probe_rows"] == 1


# --- rows -------------------------------------------------------------------------------------

MANY_ROWS = (  # two million rows, made as they are read
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2000000) SELECT n FROM r"
)


#: MariaDB stops a recursion at max_recursive_iterations (1000): a sequence table instead.
MANY_ROWS_MARIADB = "SELECT seq FROM seq_1_to_2000000"


async def test_many_rows_are_counted_to_the_bound(db: Db) -> None:
    query = MANY_ROWS if db.dialect == "postgresql" else MANY_ROWS_MARIADB
    with peak_rss_growth() as grown:
        outcome = await probe(*server_probe(db, query + " -- a trailing comment"))
    assert outcome.details["probe_rows"] == MAX_PROBE_ROWS
    assert_small(grown)


async def test_many_sqlite_rows_are_counted_to_the_bound(sqlite_files: dict[str, Path]) -> None:
    with peak_rss_growth() as grown:
        outcome = await probe(sqlite_url(sqlite_files), {"probe_query": MANY_ROWS}, roots=roots(sqlite_files))
    assert outcome.details["probe_rows"] == MAX_PROBE_ROWS
    assert_small(grown)


# --- what the wrapping must not break ----------------------------------------------------------


@pytest.mark.parametrize("query", ["SELECT 1; -- done", "SELECT 1 /* ; */ ; /* done */", "SELECT ';'"])
async def test_a_statement_end_and_comments_after_it(db: Db, query: str) -> None:
    outcome = await probe(*server_probe(db, query))
    assert outcome.details["probe_rows"] == 1


async def test_repeated_column_names(db: Db) -> None:
    """PostgreSQL and SQLite take them in a subquery; MySQL and MariaDB refuse it, saying how to fix it."""
    query = "SELECT 1, 1"
    if db.dialect == "postgresql":
        assert (await probe(*server_probe(db, query))).details["probe_rows"] == 1
        return
    error = await probe_error(*server_probe(db, query))
    assert error.kind is ErrorKind.INVALID_CONFIG
    assert "distinct names" in error.message
    assert (await probe(*server_probe(db, "SELECT 1 AS a, 1 AS b"))).details["probe_rows"] == 1


async def test_sqlite_repeated_column_names_and_statement_end(sqlite_files: dict[str, Path]) -> None:
    outcome = await probe(
        sqlite_url(sqlite_files), {"probe_query": "SELECT 1, 1; -- done"}, roots=roots(sqlite_files)
    )
    assert outcome.details["probe_rows"] == 1


# --- time -------------------------------------------------------------------------------------

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
#: MariaDB stops a recursion at max_recursive_iterations: 10^15 joined rows instead.
ENDLESS_MARIADB = "SELECT count(*) FROM seq_1_to_100000 a, seq_1_to_100000 b, seq_1_to_100000 c"


async def test_an_endless_query_stops_on_the_server_at_the_deadline(db: Db) -> None:
    """Our side gives up at the deadline either way; the server must stop working too."""
    start = time.monotonic()
    query = ENDLESS if db.dialect == "postgresql" else ENDLESS_MARIADB
    error = await probe_error(*server_probe(db, query), timeout=1.0)
    assert error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 4
    # The server's own bound ends the statement; the dropped connection alone would not.
    for _ in range(50):
        if not await still_running(db):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the probe query still runs on the server")


async def still_running(db: Db) -> bool:
    if db.dialect == "postgresql":
        outcome = await probe(
            db.endpoint("postgres"),
            {
                "password": PG_PASSWORD,  # the superuser's, to see other sessions
                "probe_query": "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE '%UNION ALL SELECT x + 1 FROM c%' AND pid <> pg_backend_pid()",
            },
        )
    else:
        outcome = await probe(
            *server_probe(
                db,
                "SELECT 1 FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                "'%seq_1_to_100000 c%' AND ID <> CONNECTION_ID()",
            )
        )
    return bool(outcome.details["probe_rows"])


async def test_an_endless_sqlite_query_is_interrupted(sqlite_files: dict[str, Path]) -> None:
    """The query runs in a thread of ours: it must stop at the deadline, not only our wait for it."""
    start = time.monotonic()
    error = await probe_error(
        sqlite_url(sqlite_files), {"probe_query": ENDLESS}, timeout=0.5, roots=roots(sqlite_files)
    )
    assert error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 2.5
    await asyncio.sleep(0.3)
    cpu = time.process_time()
    await asyncio.sleep(1.0)
    assert time.process_time() - cpu < 0.5, "the SQLite query still runs"
