"""The sql probe against real servers: a password-protected PostgreSQL (with TLS),
a second MariaDB, and SQLite files under a configured root.

One suite runs on PostgreSQL and MariaDB (the ``db`` fixture); TLS, SQLite,
the schema and the error mappings have their own tests.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import secrets
import sqlite3
import ssl
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import asyncpg.exceptions
import pydantic
import pytest
import trustme
from asyncmy import errors as myerrors

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind
from connectord.network import EgressPolicy, Network
from connectord.plugin import ProbeContext, ProbeError, ProbeOutcome
from connectord.settings import Settings
from connectord.types.sql import (
    SqlConfig,
    SqlType,
    check_probe_query,
    connect_postgres,
    map_mysql_error,
    map_postgres_error,
    map_sqlite_error,
    mysql_can_write,
)
from tests.types.peers_sql import MariaPeer, PgPeer, black_hole, free_port, start_mariadb, start_postgres

LOOPBACK = ["127.0.0.0/8", "::1/128"]
PG_PASSWORD = "pg-" + secrets.token_hex(8)
READER_PASSWORD = "rd-" + secrets.token_hex(8)
WRITER_PASSWORD = "wr-" + secrets.token_hex(8)
MARIA_PASSWORD = "my-" + secrets.token_hex(8)
ALL_SECRETS = (PG_PASSWORD, READER_PASSWORD, WRITER_PASSWORD, MARIA_PASSWORD)


# --- peers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_ca() -> trustme.CA:
    """The CA that signed the PostgreSQL server's certificate."""
    return trustme.CA()


@pytest.fixture(scope="session")
def pg_peer(pg_ca: trustme.CA) -> Iterator[PgPeer]:
    """PostgreSQL with scram-sha-256 and TLS (a certificate for ``localhost`` only)."""
    cert = pg_ca.issue_cert("localhost")
    peer = start_postgres(PG_PASSWORD, cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes())
    try:
        peer.psql(
            "CREATE TABLE items (id int); "
            f"CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}'; "
            "GRANT CONNECT ON DATABASE postgres TO reader; GRANT SELECT ON items TO reader; "
            f"CREATE ROLE writer LOGIN PASSWORD '{WRITER_PASSWORD}'; "
            "GRANT SELECT, INSERT ON items TO writer; CREATE SEQUENCE counter; "
            "GRANT USAGE ON SEQUENCE counter TO reader;"
        )
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def maria_peer() -> Iterator[MariaPeer]:
    """A second MariaDB with an admin login and a SELECT-only login."""
    peer = start_mariadb()
    try:
        peer.sql(
            "CREATE DATABASE probe; CREATE TABLE probe.items (id int); "
            f"CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '{MARIA_PASSWORD}'; "
            "GRANT ALL PRIVILEGES ON *.* TO 'app'@'127.0.0.1'; "
            f"CREATE USER 'reader'@'127.0.0.1' IDENTIFIED BY '{READER_PASSWORD}'; "
            "GRANT SELECT ON probe.* TO 'reader'@'127.0.0.1';"
        )
        yield peer
    finally:
        peer.stop()


@dataclass
class Db:
    """One server of the shared suite: how to address it and its logins."""

    dialect: str
    port: int
    database: str
    admin: tuple[str, str]
    reader: tuple[str, str]

    def endpoint(self, user: str, port: int | None = None, database: str | None = None) -> str:
        scheme = "postgresql" if self.dialect == "postgresql" else "mysql"
        return f"{scheme}://{user}@127.0.0.1:{port or self.port}/{database or self.database}"


@pytest.fixture(params=["postgresql", "mysql"])
def db(request: pytest.FixtureRequest) -> Db:
    """Each database server in turn."""
    if request.param == "postgresql":
        pg: PgPeer = request.getfixturevalue("pg_peer")
        return Db("postgresql", pg.port, "postgres", ("postgres", PG_PASSWORD), ("reader", READER_PASSWORD))
    maria: MariaPeer = request.getfixturevalue("maria_peer")
    return Db("mysql", maria.port, "probe", ("app", MARIA_PASSWORD), ("reader", READER_PASSWORD))


async def probe(
    endpoint: str | None,
    config: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - the probe's bound, handed to ProbeContext
    roots: tuple[str, ...] = (),
    allow: list[str] = LOOPBACK,
) -> ProbeOutcome:
    """Run the sql probe directly, as the facade would (bounded by ``wait_for`` too)."""
    ctx = ProbeContext(
        endpoint, SqlConfig.model_validate(config or {}), timeout, Network(EgressPolicy(allow), roots)
    )
    return await asyncio.wait_for(SqlType().probe(ctx), timeout + 5)


async def probe_error(endpoint: str | None, config: dict[str, Any] | None = None, **kw: Any) -> ProbeError:
    """The :class:`ProbeError` a probe raises (fails the test if it succeeds)."""
    with pytest.raises(ProbeError) as info:
        await probe(endpoint, config, **kw)
    return info.value


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in str(text)


# --- one suite, PostgreSQL and MariaDB --------------------------------------------------


async def test_right_password_reports_the_server(db: Db) -> None:
    user, password = db.admin
    outcome = await probe(db.endpoint(user), {"password": password})
    details = outcome.details
    assert details["dialect"] == db.dialect
    assert details["database"] == db.database
    assert details["current_user"].split("@")[0] == user
    assert details["server_version"][:2].isdigit()
    assert details["can_write"] is True
    assert details["probe_rows"] == 1
    assert set(details["phases"]) == {"resolve_ms", "connect_ms", "probe_ms"}
    assert outcome.capabilities == ["read", "write", "query", "transaction"]
    assert_no_secret(details)


async def test_wrong_password_is_auth(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = db.admin
    error = await probe_error(db.endpoint(user), {"password": password + "x"})
    assert error.kind is ErrorKind.AUTH
    assert "Traceback" not in error.message
    assert_no_secret(error.message, caplog.text)


async def test_unknown_database_is_not_found(db: Db) -> None:
    user, password = db.admin
    error = await probe_error(db.endpoint(user, database="no_such_db"), {"password": password})
    assert error.kind is ErrorKind.NOT_FOUND
    assert "no_such_db" in error.message


async def test_read_only_login_drops_write(db: Db) -> None:
    user, password = db.reader
    outcome = await probe(db.endpoint(user), {"password": password})
    assert outcome.details["can_write"] is False
    assert outcome.details["can_write_reason"]
    assert outcome.capabilities == ["read", "query", "transaction"]


async def test_closed_port_is_refused_quickly(db: Db) -> None:
    user, password = db.admin
    start = time.monotonic()
    error = await probe_error(db.endpoint(user, port=free_port()), {"password": password})
    assert error.kind is ErrorKind.REFUSED
    assert time.monotonic() - start < 2


async def test_black_hole_times_out_within_the_bound(db: Db) -> None:
    user, password = db.admin
    with black_hole() as port:
        start = time.monotonic()
        error = await probe_error(db.endpoint(user, port=port), {"password": password}, timeout=1.0)
    assert error.kind is ErrorKind.TIMEOUT
    assert 0.9 <= time.monotonic() - start < 3


async def test_slow_probe_query_times_out_within_the_bound(db: Db) -> None:
    user, password = db.admin
    slow = "SELECT pg_sleep(5)" if db.dialect == "postgresql" else "SELECT SLEEP(5)"
    start = time.monotonic()
    error = await probe_error(db.endpoint(user), {"password": password, "probe_query": slow}, timeout=1.0)
    assert error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 3


async def test_loopback_is_refused_by_the_default_policy(db: Db) -> None:
    user, password = db.admin
    error = await probe_error(db.endpoint(user), {"password": password}, allow=[])
    assert error.kind is ErrorKind.EGRESS_DENIED


async def test_username_is_required(db: Db) -> None:
    error = await probe_error(db.endpoint("").replace("://@", "://"), {"password": "x"})
    assert error.kind is ErrorKind.INVALID_CONFIG


@contextmanager
def slow_replies(port: int, delay: float) -> Iterator[int]:
    """A loopback port that forwards to ``port``, each chunk the server sends held ``delay`` s.

    A TLS close that waits for the server's ``close_notify`` is then still
    waiting when a short-lived loop ends, every time rather than now and then.
    """
    loop = asyncio.new_event_loop()
    relays: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(hold)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(pump(client_r, server_w, 0), pump(server_r, client_w, delay))
        finally:
            client_w.close()
            relays.discard(task)

    async def serve() -> asyncio.Server:
        return await asyncio.start_server(relay, "127.0.0.1", 0)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await asyncio.sleep(0.05)  # the transports' close callbacks

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_wrong_password_leaves_no_transport_open(db: Db) -> None:
    """Issue 10: the failed login's TLS transport closed without waiting for the server.

    Each probe runs in a loop of its own that ends right after it, as a test's
    does; the server's replies come late, so a close still waiting for them
    shows up as an unclosed transport when the loop is collected.
    """
    user, password = db.admin
    with slow_replies(db.port, 0.01) as port, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(30):
            error = asyncio.run(probe_error(db.endpoint(user, port=port), {"password": password + "x"}))
            assert error.kind is ErrorKind.AUTH
            gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks[:4]


# --- PostgreSQL only --------------------------------------------------------------------


def pg_url(peer: PgPeer, user: str = "postgres", host: str = "127.0.0.1") -> str:
    return f"postgresql://{user}@{host}:{peer.port}/postgres"


async def test_pg_verify_full_checks_the_name_not_the_address(pg_peer: PgPeer, pg_ca: trustme.CA) -> None:
    """The probe dials the checked IP but verifies ``localhost``, the name in the endpoint."""
    config = {"password": PG_PASSWORD, "ssl_mode": "verify-full", "ca_pem": pg_ca.cert_pem.bytes().decode()}
    outcome = await probe(pg_url(pg_peer, host="localhost"), config)
    assert outcome.details["tls"] is True
    error = await probe_error(pg_url(pg_peer), config)  # the certificate does not name 127.0.0.1
    assert error.kind is ErrorKind.TLS


async def test_pg_verify_full_with_another_ca_is_tls(pg_peer: PgPeer) -> None:
    other = trustme.CA().cert_pem.bytes().decode()
    error = await probe_error(
        pg_url(pg_peer, host="localhost"),
        {"password": PG_PASSWORD, "ssl_mode": "verify-full", "ca_pem": other},
    )
    assert error.kind is ErrorKind.TLS
    assert "certificate" in error.message


async def test_pg_prefer_uses_tls_when_offered_and_falls_back_when_not(pg_peer: PgPeer) -> None:
    outcome = await probe(pg_url(pg_peer), {"password": PG_PASSWORD})
    assert outcome.details["tls"] is True
    # The shared server on 5432 has TLS off (trust auth, user postgres).
    plain = await probe("postgresql://postgres@127.0.0.1:5432/postgres")
    assert plain.details["tls"] is False
    error = await probe_error("postgresql://postgres@127.0.0.1:5432/postgres", {"ssl_mode": "require"})
    assert error.kind is ErrorKind.TLS


async def test_pg_probe_runs_in_a_read_only_transaction(pg_peer: PgPeer) -> None:
    """nextval() passes the schema check (it is a SELECT) but the transaction refuses the write."""
    error = await probe_error(
        pg_url(pg_peer, user="reader"),
        {"password": READER_PASSWORD, "probe_query": "SELECT nextval('counter')"},
    )
    assert error.kind is ErrorKind.INVALID_CONFIG
    assert "25006" in error.message
    assert pg_peer.psql("SELECT last_value, is_called FROM counter").strip() == "1|f"


async def test_pg_table_privilege_counts_as_write(pg_peer: PgPeer) -> None:
    outcome = await probe(pg_url(pg_peer, user="writer"), {"password": WRITER_PASSWORD})
    assert outcome.details["can_write"] is True
    assert "table" in outcome.details["can_write_reason"]


async def test_connect_postgres_helper(pg_peer: PgPeer) -> None:
    """The public helper the pgvector probe reuses: connection plus phases."""
    ctx = ProbeContext(None, SqlConfig(password=PG_PASSWORD), 5.0, Network(EgressPolicy(LOOPBACK)))
    conn, phases = await connect_postgres(ctx, "127.0.0.1", pg_peer.port, "postgres", "postgres")
    try:
        assert await conn.fetchval("SELECT 41 + 1") == 42
        assert set(phases) == {"resolve_ms", "connect_ms"}
    finally:
        await conn.close()
    with pytest.raises(ProbeError) as info:
        await connect_postgres(ctx, "127.0.0.1", pg_peer.port, "postgres", "reader")
    assert info.value.kind is ErrorKind.AUTH


async def test_pg_never_reads_the_service_users_pgpass(
    pg_peer: PgPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a password, asyncpg would look in PGPASSWORD and ~/.pgpass: the probe must not."""
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:*:{PG_PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    error = await probe_error(pg_url(pg_peer))
    assert error.kind is ErrorKind.AUTH


# --- MariaDB only -------------------------------------------------------------------------


async def test_mysql_require_tls_on_a_server_without_it(maria_peer: MariaPeer) -> None:
    error = await probe_error(
        f"mariadb://app@127.0.0.1:{maria_peer.port}/probe",
        {"password": MARIA_PASSWORD, "ssl_mode": "require"},
    )
    assert error.kind is ErrorKind.TLS


async def test_mysql_sends_one_statement_per_call(maria_peer: MariaPeer) -> None:
    """Multi-statements are switched off in the driver too, not only by the schema; and the
    probe runs what comes before the first ``;`` only."""
    from connectord.types._sql_common import Deadline
    from connectord.types._sql_mysql import _connect_mysql
    from connectord.types.sql import resolve_target

    config = SqlConfig.model_construct(
        password=pydantic.SecretStr(MARIA_PASSWORD), probe_query="SELECT 1; SELECT 2"
    )
    endpoint = f"mysql://app@127.0.0.1:{maria_peer.port}/probe"
    outcome = await SqlType().probe(ProbeContext(endpoint, config, 5.0, Network(EgressPolicy(LOOPBACK))))
    assert outcome.details["probe_rows"] == 1
    conn = await _connect_mysql(config, resolve_target(endpoint, config), "127.0.0.1", None, Deadline(5.0))
    try:
        async with conn.cursor() as cur:
            with pytest.raises(myerrors.ProgrammingError):
                await cur.execute("SELECT 1; SELECT 2")
    finally:
        conn.close()


def test_mysql_can_write_rule() -> None:
    assert (
        mysql_can_write(False, ["GRANT USAGE ON *.* TO `r`@`%`", "GRANT SELECT ON `db`.* TO `r`@`%`"])[0]
        is False
    )
    assert mysql_can_write(False, ["GRANT SELECT, INSERT ON `db`.`t` TO `w`@`%`"])[0] is True
    assert mysql_can_write(False, ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"])[0] is True
    assert mysql_can_write(False, ["GRANT `role1` TO `u`@`%`"])[0] is False
    assert mysql_can_write(True, ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"])[0] is False


# --- SQLite -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_files(tmp_path: Path) -> dict[str, Path]:
    """A root with a database, and things around it that must stay out of reach."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.db"
    for path in (root / "app.db", outside):
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x int)")
        conn.close()
    (root / "escape.db").symlink_to(outside)
    (root / "notadb.db").write_bytes(b"this is not a database" * 100)
    return {"root": root, "db": root / "app.db", "outside": outside}


async def test_sqlite_file_under_the_root(sqlite_files: dict[str, Path]) -> None:
    before = sqlite_files["db"].read_bytes()
    roots = (str(sqlite_files["root"]),)
    outcome = await probe(f"sqlite:///{sqlite_files['db']}", roots=roots)
    assert outcome.details["dialect"] == "sqlite"
    assert outcome.details["server_version"] == sqlite3.sqlite_version
    assert outcome.details["can_write"] is True
    assert sqlite_files["db"].read_bytes() == before  # opened read-only
    same = await probe(f"sqlite:////{sqlite_files['db']}", roots=roots)  # SQLAlchemy's absolute spelling
    assert same.details["probe_rows"] == 1
    by_config = await probe(None, {"dialect": "sqlite", "database": str(sqlite_files["db"])}, roots=roots)
    assert by_config.details["probe_rows"] == 1


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(lambda f: f["outside"], id="outside"),
        pytest.param(lambda f: f["root"] / "escape.db", id="symlink-escape"),
        pytest.param(lambda f: Path(f"{f['root']}/../outside.db"), id="dotdot-escape"),
    ],
)
async def test_sqlite_outside_the_root_is_refused(
    sqlite_files: dict[str, Path], make_path: Callable[[dict[str, Path]], Path]
) -> None:
    error = await probe_error(f"sqlite:///{make_path(sqlite_files)}", roots=(str(sqlite_files["root"]),))
    assert error.kind is ErrorKind.EGRESS_DENIED
    assert "CONNECTORD_FILE_ROOTS" in error.message


async def test_sqlite_missing_file_is_not_found(sqlite_files: dict[str, Path]) -> None:
    error = await probe_error(
        f"sqlite:///{sqlite_files['root']}/missing.db", roots=(str(sqlite_files["root"]),)
    )
    assert error.kind is ErrorKind.NOT_FOUND
    # Outside the roots, a missing file is refused the same way as an existing one: nothing leaks.
    error = await probe_error(
        f"sqlite:///{sqlite_files['root'].parent}/missing.db", roots=(str(sqlite_files["root"]),)
    )
    assert error.kind is ErrorKind.EGRESS_DENIED


async def test_sqlite_other_refusals(sqlite_files: dict[str, Path]) -> None:
    roots = (str(sqlite_files["root"]),)
    assert (await probe_error(f"sqlite:///{sqlite_files['db']}")).kind is ErrorKind.EGRESS_DENIED  # no roots
    assert (
        await probe_error(f"sqlite:///{sqlite_files['root']}/notadb.db", roots=roots)
    ).kind is ErrorKind.PROTOCOL
    assert (
        await probe_error(f"sqlite:///{sqlite_files['root']}", roots=roots)
    ).kind is ErrorKind.INVALID_CONFIG
    relative = await probe_error(None, {"dialect": "sqlite", "database": "app.db"}, roots=roots)
    assert relative.kind is ErrorKind.INVALID_CONFIG


async def test_sqlite_name_with_uri_characters_stays_read_only(sqlite_files: dict[str, Path]) -> None:
    tricky = sqlite_files["root"] / "a?mode=rwc#x.db"
    tricky.write_bytes(sqlite_files["db"].read_bytes())
    outcome = await probe(
        None, {"dialect": "sqlite", "database": str(tricky)}, roots=(str(sqlite_files["root"]),)
    )
    assert outcome.details["probe_rows"] == 1
    # Unquoted, the URI would have opened (and created, mode=rwc) a file named "a".
    assert not (sqlite_files["root"] / "a").exists()


async def test_sqlite_slow_query_times_out(sqlite_files: dict[str, Path]) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    start = time.monotonic()
    error = await probe_error(
        f"sqlite:///{sqlite_files['db']}",
        {"probe_query": endless},
        timeout=0.5,
        roots=(str(sqlite_files["root"]),),
    )
    assert error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 2.5


# --- the schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["SELECT 1", "select 'a;b'", "SHOW server_version", "VALUES (1)", "WITH x AS (SELECT 1) SELECT * FROM x",
     "SELECT 1;", "-- note\nSELECT 1", "SELECT 'DELETE FROM t'", "TABLE items", "/* c */ SELECT $$;$$"],
)  # fmt: skip
def test_read_only_probe_queries_are_accepted(query: str) -> None:
    assert SqlConfig(probe_query=query).probe_query == query.strip()


@pytest.mark.parametrize(
    "query",
    ["", "DELETE FROM t", "SELECT 1; DROP TABLE t", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
     "SELECT * INTO copy FROM t", "SELECT * FROM t FOR UPDATE", "SELECT 1 /*!; DROP TABLE t */",
     "SELECT 1 INTO OUTFILE '/tmp/x'", "INSERT INTO t VALUES (1)", "CALL p()", "SET x = 1",
     "COPY t TO '/tmp/x'", "SELECT 1 /* unterminated", "PRAGMA writable_schema = 1", "ATTACH 'x' AS y"],
)  # fmt: skip
def test_writing_or_multiple_statements_are_refused(query: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        SqlConfig(probe_query=query)
    with pytest.raises(ValueError, match="must"):
        check_probe_query(query)


@pytest.mark.parametrize(
    "option",
    ["local_infile", "init_command", "ssl_cert", "ssl_key", "sslcert", "sslkey", "sslrootcert", "plugin_dir",
     "read_default_file", "passfile", "auth_plugin_map", "server_settings"],
)  # fmt: skip
def test_options_that_load_code_or_read_files_are_refused(option: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        SqlConfig.model_validate({option: "/etc/passwd"})


def test_ca_must_be_pem_text_and_secrets_are_write_only() -> None:
    with pytest.raises(pydantic.ValidationError, match="PEM"):
        SqlConfig(ca_pem="/etc/ssl/certs/ca.pem")
    schema = SqlConfig.model_json_schema()
    assert schema["properties"]["password"]["anyOf"][0]["writeOnly"] is True
    assert all("description" in p for p in schema["properties"].values())


@pytest.mark.parametrize(
    ("endpoint", "config"),
    [
        ("redis://127.0.0.1:6379", {}),
        ("127.0.0.1:5432", {}),
        ("mysql://u@127.0.0.1/db", {"dialect": "postgresql"}),
        ("postgresql://u@127.0.0.1/db?sslmode=disable", {}),
        (None, {}),
    ],
)
async def test_unusable_endpoints_are_invalid_config(endpoint: str | None, config: dict[str, Any]) -> None:
    assert (await probe_error(endpoint, config)).kind is ErrorKind.INVALID_CONFIG


# --- error mapping ------------------------------------------------------------------------


def _classes(module: Any, base: type[BaseException] = Exception) -> list[type[BaseException]]:
    return [c for _, c in inspect.getmembers(module, inspect.isclass) if issubclass(c, base)]


def test_every_asyncpg_exception_maps_to_a_kind() -> None:
    classes = _classes(asyncpg.exceptions)
    assert len(classes) > 250
    for cls in classes:
        exc = (
            cls("boom") if cls is not asyncpg.exceptions.OutdatedSchemaCacheError else cls("boom", schema="s")
        )
        error = map_postgres_error(exc)
        assert isinstance(error.kind, ErrorKind), cls
        assert error.kind is not ErrorKind.INTERNAL or issubclass(
            cls, asyncpg.exceptions.InternalClientError
        ), cls
    expected = {
        asyncpg.exceptions.InvalidPasswordError: ErrorKind.AUTH,
        asyncpg.exceptions.InvalidAuthorizationSpecificationError: ErrorKind.AUTH,
        asyncpg.exceptions.InsufficientPrivilegeError: ErrorKind.AUTH,
        asyncpg.exceptions.InvalidCatalogNameError: ErrorKind.NOT_FOUND,
        asyncpg.exceptions.CannotConnectNowError: ErrorKind.UNAVAILABLE,
        asyncpg.exceptions.TooManyConnectionsError: ErrorKind.UNAVAILABLE,
        asyncpg.exceptions.ConnectionDoesNotExistError: ErrorKind.UNAVAILABLE,
        asyncpg.exceptions.QueryCanceledError: ErrorKind.TIMEOUT,
        asyncpg.exceptions.ProtocolViolationError: ErrorKind.PROTOCOL,
        asyncpg.exceptions.PostgresSyntaxError: ErrorKind.INVALID_CONFIG,
        asyncpg.exceptions.ReadOnlySQLTransactionError: ErrorKind.INVALID_CONFIG,
        asyncpg.exceptions.FeatureNotSupportedError: ErrorKind.UNSUPPORTED,
        asyncpg.exceptions.ClientConfigurationError: ErrorKind.INVALID_CONFIG,
        asyncpg.exceptions.ProtocolError: ErrorKind.PROTOCOL,
    }
    for cls, kind in expected.items():
        assert map_postgres_error(cls("boom")).kind is kind, cls


def test_every_asyncmy_exception_maps_to_a_kind() -> None:
    classes = _classes(myerrors)
    assert myerrors.OperationalError in classes
    for cls in classes:
        for args in ((), ("boom",), (1, "unknown code"), (1045, "Access denied")):
            assert isinstance(map_mysql_error(cls(*args)).kind, ErrorKind), (cls, args)
        assert map_mysql_error(cls("boom")).kind is not ErrorKind.INTERNAL, cls
    expected = {
        1045: ErrorKind.AUTH, 1044: ErrorKind.AUTH, 1049: ErrorKind.NOT_FOUND, 1040: ErrorKind.UNAVAILABLE,
        2013: ErrorKind.UNAVAILABLE, 1064: ErrorKind.INVALID_CONFIG, 1792: ErrorKind.INVALID_CONFIG,
        3024: ErrorKind.TIMEOUT, 2026: ErrorKind.TLS,
    }  # fmt: skip
    for code, kind in expected.items():
        assert map_mysql_error(myerrors.OperationalError(code, "x")).kind is kind, code
    refused = myerrors.OperationalError(2003, "Can't connect")
    refused.__cause__ = ConnectionRefusedError(111, "refused")
    assert map_mysql_error(refused).kind is ErrorKind.REFUSED
    timed_out = myerrors.OperationalError(2003, "Can't connect")
    timed_out.__cause__ = TimeoutError()
    assert map_mysql_error(timed_out).kind is ErrorKind.TIMEOUT


def test_every_sqlite3_exception_maps_to_a_kind() -> None:
    for cls in _classes(sqlite3):
        assert map_sqlite_error(cls("boom")).kind is not ErrorKind.INTERNAL or cls is sqlite3.InternalError, (
            cls
        )
    interrupted = sqlite3.OperationalError("interrupted")
    interrupted.sqlite_errorcode = sqlite3.SQLITE_INTERRUPT
    assert map_sqlite_error(interrupted).kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize("mapper", [map_postgres_error, map_mysql_error])
def test_socket_and_tls_errors_map_by_kind(mapper: Callable[[BaseException], ProbeError]) -> None:
    verify = ssl.SSLCertVerificationError(1, "verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    cases: dict[BaseException, ErrorKind] = {
        ConnectionRefusedError(111, "refused"): ErrorKind.REFUSED,
        TimeoutError(): ErrorKind.TIMEOUT,
        verify: ErrorKind.TLS,
        ssl.SSLError(1, "handshake"): ErrorKind.TLS,
        ConnectionResetError(104, "reset"): ErrorKind.UNAVAILABLE,
        OSError(113, "No route to host"): ErrorKind.UNAVAILABLE,
    }
    for exc, kind in cases.items():
        assert mapper(exc).kind is kind, exc


# --- through the facade -------------------------------------------------------------------


@pytest.fixture
async def facade(tmp_path: Path, sqlite_files: dict[str, Path]) -> AsyncIterator[ConnectorsFacade]:
    """A private facade on SQLite with loopback opened and the SQLite root configured."""
    settings = Settings(data_dir=tmp_path / "data", egress_allow=LOOPBACK, file_roots=[sqlite_files["root"]])
    async with ConnectorsFacade(settings=settings) as f:
        yield f


@pytest.fixture
async def tenant(facade: ConnectorsFacade) -> str:
    record, _ = await Admin(facade).create_tenant(f"t-{secrets.token_hex(4)}")
    return record.id


async def test_facade_moves_the_url_password_and_refines_capabilities(
    facade: ConnectorsFacade, tenant: str, pg_peer: PgPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = f"postgresql://reader:{READER_PASSWORD}@127.0.0.1:{pg_peer.port}/postgres"
    info = await facade.register_connector(tenant, "reporting", "sql", endpoint=endpoint)
    assert info.endpoint == f"postgresql://reader@127.0.0.1:{pg_peer.port}/postgres"
    assert info.secret_fields == ["password"]
    assert "write" in info.capabilities
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["current_user"] == "reader"
    after = await facade.get_connector(info.id, tenant)
    assert after is not None
    assert after.status == "connected"
    assert after.capabilities == ["read", "query", "transaction"]
    assert_no_secret(result.to_dict(), after.to_dict(), caplog.text)


async def test_facade_wrong_password_and_sqlite(
    facade: ConnectorsFacade, tenant: str, maria_peer: MariaPeer, sqlite_files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    bad = await facade.register_connector(
        tenant, "shop", "sql", endpoint=f"mariadb://app@127.0.0.1:{maria_peer.port}/probe",
        config={"password": MARIA_PASSWORD[::-1]},
    )  # fmt: skip
    result = await facade.test_connector(bad.id, tenant)
    assert result.success is False
    assert result.error_kind == "auth"
    wrong = MARIA_PASSWORD[::-1]
    assert wrong not in str(result.to_dict())
    assert wrong not in caplog.text
    assert_no_secret(result.to_dict(), caplog.text)
    local = await facade.register_connector(
        tenant, "local", "sql", endpoint=f"sqlite:///{sqlite_files['db']}"
    )
    assert (await facade.test_connector(local.id, tenant)).success
    outside = await facade.register_connector(
        tenant, "outside", "sql", endpoint=f"sqlite:///{sqlite_files['outside']}"
    )
    refused = await facade.test_connector(outside.id, tenant)
    assert refused.error_kind == "egress_denied"


# --- the probe query's bounds: tests/types/test_sql_bounds.py ----------------------------------


async def test_a_slow_probe_query_stops_at_the_deadline_on_the_server_too(db: Db) -> None:
    query = {"postgresql": "SELECT pg_sleep(20)", "mysql": "SELECT SLEEP(20)"}[db.dialect]
    start = time.monotonic()
    error = await probe_error(
        db.endpoint(db.admin[0]), {"password": db.admin[1], "probe_query": query}, timeout=1.0
    )
    assert error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 4
