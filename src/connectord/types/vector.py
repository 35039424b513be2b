"""The ``vector`` type: pgvector, Chroma, Milvus, Qdrant, Weaviate, Pinecone (``docs/vector-probe.md``).

One type, a ``provider`` field. Every probe reaches the server's own health or
version API and reports ``provider``, ``server_version``, ``collection_count``
and, for a named ``collection``, its ``dimension`` and ``metric`` where the
provider tells them. pgvector goes through the sql type's PostgreSQL
connection; Milvus through pymilvus (gRPC) in a thread; the others over HTTP
with :class:`~connectord.network.http.CheckedHttp`, which connects only to
egress-checked addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, unquote

from pydantic import Field, SecretStr, model_validator

from connectord.model import Capability, ErrorKind
from connectord.network.endpoints import open_tcp, parse_http_url, split_endpoint
from connectord.network.failures import first_in_chain
from connectord.network.http import CheckedHttp, status_error
from connectord.network.tls import CaPem
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.timing import timed
from connectord.types.base import reveal
from connectord.types.endpoint import EndpointRule
from connectord.types.sql import SslMode

T = TypeVar("T")


class VectorProvider(enum.StrEnum):
    """The vector databases this type knows."""

    PGVECTOR = "pgvector"
    CHROMA = "chroma"
    MILVUS = "milvus"
    QDRANT = "qdrant"
    WEAVIATE = "weaviate"
    PINECONE = "pinecone"


DEFAULT_PORTS = {
    VectorProvider.PGVECTOR: 5432,
    VectorProvider.CHROMA: 8000,
    VectorProvider.MILVUS: 19530,
    VectorProvider.QDRANT: 6333,
    VectorProvider.WEAVIATE: 8080,
    VectorProvider.PINECONE: 443,
}
PINECONE_CONTROL_PLANE = "https://api.pinecone.io"
PINECONE_API_VERSION = "2025-04"
PGVECTOR_TYPES = ("vector", "halfvec", "sparsevec")
PGVECTOR_METRICS = {"l2": "l2", "ip": "inner_product", "cosine": "cosine", "l1": "l1"}
# merr codes of Milvus 2.3+ for "not authenticated / not permitted", and the legacy PermissionDenied.
MILVUS_AUTH_CODES = frozenset({1400, 1401, 1402, 1403, 3})
MILVUS_NOT_FOUND_CODES = frozenset({100, 700})
MILVUS_CONNECT_FAILED = 2  # pymilvus.client.types.Status.CONNECT_FAILED
USER_FIELDS = {VectorProvider.PGVECTOR, VectorProvider.MILVUS}


class VectorConfig(ConnectorConfig):
    """Config of a ``vector`` connector. The endpoint is the server's URL (``http://host:6333``,
    ``postgresql://host:5432/db``, or ``host:port``); Pinecone defaults to its control plane."""

    provider: VectorProvider = Field(
        description="pgvector, chroma, milvus, qdrant, weaviate or pinecone.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="API key or token (chroma: x-chroma-token; milvus: token; qdrant: api-key; "
        "weaviate: bearer; pinecone: Api-Key). Not used by pgvector.",
    )
    collection: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="A collection (pgvector: a table, optionally schema.table; weaviate: a class; "
        "pinecone: an index) whose dimension and metric the test reports.",
    )
    database: str | None = Field(
        default=None,
        max_length=255,
        description="pgvector: the database (default: the endpoint's path, then the user name); "
        "chroma: the database (default_database); milvus: the database.",
    )
    tenant: str | None = Field(
        default=None, max_length=255, description="chroma: the tenant (default_tenant)."
    )
    username: str | None = Field(
        default=None, max_length=255, description="pgvector and milvus: the login name (with password)."
    )
    ssl_mode: SslMode | None = Field(
        default=None, description="pgvector: TLS mode as for sql connectors (default prefer)."
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and name.")
    ca_pem: CaPem = Field(
        default=None, max_length=65536, description="CA certificates (PEM text, not a path) to trust."
    )

    @model_validator(mode="after")
    def _provider_fields(self) -> VectorConfig:
        if self.provider is VectorProvider.PGVECTOR and self.api_key is not None:
            raise ValueError("pgvector uses username and password, not api_key")
        if self.provider not in USER_FIELDS and (self.username or self.password is not None):
            raise ValueError(f"{self.provider} uses api_key, not username and password")
        if self.provider is VectorProvider.PINECONE and self.api_key is None:
            raise ValueError("pinecone needs api_key")
        if self.tenant is not None and self.provider is not VectorProvider.CHROMA:
            raise ValueError("tenant is a chroma setting")
        if self.ssl_mode is not None and self.provider is not VectorProvider.PGVECTOR:
            raise ValueError("ssl_mode is a pgvector setting; use tls_verify and an https:// endpoint")
        return self


_PGVECTOR_ENDPOINT = EndpointRule(
    schemes=("postgresql", "postgres"), bare=True, credentials=True, user_alone=True
)
_HTTP_ENDPOINT = EndpointRule(schemes=("http", "https"), bare=True)


class VectorType(ConnectorType):
    """Vector databases: pgvector, Qdrant, Chroma, Weaviate, Pinecone, Milvus."""

    name: ClassVar[str] = "vector"
    description: ClassVar[str] = "Vector databases: pgvector, Qdrant, Chroma, Weaviate, Pinecone, Milvus."
    endpoint: ClassVar[EndpointRule] = EndpointRule(
        schemes=("http", "https", "postgresql", "postgres"), bare=True, credentials=True, user_alone=True
    )
    config_model: ClassVar[type[ConnectorConfig]] = VectorConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.VECTOR_SEARCH,
    )

    def endpoint_rule(self, config: ConnectorConfig) -> EndpointRule:
        """pgvector: a PostgreSQL URL (a user name and password may be in it); the others:
        an http(s) URL or ``host:port``, credentials in the config only."""
        assert isinstance(config, VectorConfig)
        if config.provider is VectorProvider.PGVECTOR:
            return _PGVECTOR_ENDPOINT
        return _HTTP_ENDPOINT

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Reach the provider's health and version API; count collections; describe the named one."""
        config = ctx.config
        assert isinstance(config, VectorConfig)
        details = await _PROBES[config.provider](ctx, config)
        return ProbeOutcome(details={"provider": str(config.provider), **details})


def _http(ctx: ProbeContext, config: VectorConfig, headers: dict[str, str], endpoint: str) -> CheckedHttp:
    return ctx.network.http(
        endpoint,
        ctx.timeout,
        default_port=DEFAULT_PORTS[config.provider],
        headers={"Accept": "application/json", "User-Agent": "connectord-probe", **headers},
        tls_verify=config.tls_verify,
        ca_pem=config.ca_pem,
    )


def _collection_details(name: str | None, dimension: Any, metric: Any) -> dict[str, Any]:
    if name is None:
        return {}
    return {
        "collection": name,
        "dimension": int(dimension) if isinstance(dimension, int | float) and dimension > 0 else None,
        "metric": str(metric).lower() if metric else None,
    }


# --- pgvector -------------------------------------------------------------------------

_PG_EXTENSION = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
_PG_VECTOR_COLUMNS = """
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_type t ON t.oid = a.atttypid
    JOIN pg_extension e ON e.extname = 'vector' AND t.typnamespace = e.extnamespace
    WHERE t.typname = ANY($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped
"""
_PG_COUNT = f"SELECT count(DISTINCT a.attrelid) {_PG_VECTOR_COLUMNS} AND c.relkind IN ('r', 'p')"
_PG_COLUMN = (
    f"SELECT a.atttypmod {_PG_VECTOR_COLUMNS} AND a.attrelid = $2::regclass ORDER BY a.attnum LIMIT 1"
)
_PG_OPCLASSES = """
    SELECT DISTINCT o.opcname FROM pg_index i
    JOIN pg_opclass o ON o.oid = ANY(i.indclass::oid[])
    WHERE i.indrelid = $1::regclass
"""


def _pg_target(endpoint: str | None, config: VectorConfig) -> tuple[str, int, str | None, str | None]:
    parts, host, port = split_endpoint(endpoint, "postgresql", "postgresql://host:port/db")
    if parts.scheme.lower() not in {"postgresql", "postgres"}:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "pgvector endpoints are postgresql://host:port/db")
    database = config.database or unquote(parts.path.lstrip("/")) or None
    user = config.username or (unquote(parts.username) if parts.username else None)
    return host, port or DEFAULT_PORTS[VectorProvider.PGVECTOR], database, user


async def _probe_pgvector(ctx: ProbeContext, config: VectorConfig) -> dict[str, Any]:
    from connectord.types.sql import connect_postgres, map_postgres_error

    host, port, database, user = _pg_target(ctx.endpoint, config)
    conn, phases = await connect_postgres(
        ctx, host, port, database, user, ssl_mode=config.ssl_mode, ca_pem=config.ca_pem
    )
    try:
        with timed(phases, "probe_ms"):
            async with conn.transaction(readonly=True):
                details = await _pgvector_queries(conn, config, database or user)
    except ProbeError:
        raise
    except Exception as exc:
        raise map_postgres_error(exc) from exc
    finally:
        try:
            await conn.close(timeout=1)
        except Exception:  # noqa: BLE001 - the answer is already known; a slow goodbye changes nothing
            conn.terminate()
    return {**details, "phases": phases}


async def _pgvector_queries(conn: Any, config: VectorConfig, database: str | None) -> dict[str, Any]:
    server_version = await conn.fetchval("SHOW server_version")
    extension = await conn.fetchval(_PG_EXTENSION)
    if extension is None:
        raise ProbeError(
            ErrorKind.NOT_FOUND,
            f"the vector extension is not installed in database {database!r} "
            "(an administrator runs CREATE EXTENSION vector)",
        )
    details: dict[str, Any] = {
        "server_version": server_version,
        "extension_version": extension,
        "collection_count": await conn.fetchval(_PG_COUNT, list(PGVECTOR_TYPES)),
    }
    name = config.collection
    if name is not None:
        if await conn.fetchval("SELECT to_regclass($1)", name) is None:
            raise ProbeError(ErrorKind.NOT_FOUND, f"no table named {name!r}")
        typmod = await conn.fetchval(_PG_COLUMN, list(PGVECTOR_TYPES), name)
        if typmod is None:
            raise ProbeError(ErrorKind.NOT_FOUND, f"the table {name!r} has no vector column")
        metrics = [_pg_metric(row[0]) for row in await conn.fetch(_PG_OPCLASSES, name)]
        metric = next((m for m in metrics if m), None)
        details.update(_collection_details(name, typmod, metric))
    return details


def _pg_metric(opclass: str) -> str | None:
    """``vector_cosine_ops`` -> ``cosine``: the metric an index's operator class serves."""
    kind, _, rest = opclass.partition("_")
    if kind not in PGVECTOR_TYPES or not rest.endswith("_ops"):
        return None
    return PGVECTOR_METRICS.get(rest.removesuffix("_ops"))


# --- HTTP providers -------------------------------------------------------------------


async def _probe_chroma(ctx: ProbeContext, config: VectorConfig) -> dict[str, Any]:
    key = reveal(config.api_key)
    headers = {"x-chroma-token": key} if key else {}
    tenant = quote(config.tenant or "default_tenant", safe="")
    database = quote(config.database or "default_database", safe="")
    async with _http(ctx, config, headers, ctx.endpoint or "") as http:
        await http.get_json("/api/v2/heartbeat", "the heartbeat route")
        version = await http.get_json("/api/v2/version", "the version route")
        base = f"/api/v2/tenants/{tenant}/databases/{database}"
        count = await http.get_json(f"{base}/collections_count", "the database")
        details: dict[str, Any] = {
            "server_version": str(version),
            "collection_count": count_of(count, "the collections count route"),
        }
        if config.collection is not None:
            path = f"{base}/collections/{quote(config.collection, safe='')}"
            info = await http.get_json(path, f"the collection {config.collection!r}")
            space = (
                dig(info, "configuration_json", "hnsw", "space")
                or dig(info, "configuration_json", "spann", "space")
                or dig(info, "metadata", "hnsw:space")
            )
            details.update(_collection_details(config.collection, dig(info, "dimension"), space))
        details["phases"] = http.phases
    return details


async def _probe_qdrant(ctx: ProbeContext, config: VectorConfig) -> dict[str, Any]:
    key = reveal(config.api_key)
    async with _http(ctx, config, {"api-key": key} if key else {}, ctx.endpoint or "") as http:
        root = await http.get_json("/", "the root route")
        await _expect_ok(http, "/readyz", "the readiness route /readyz")
        listing = await http.get_json("/collections", "the collections route")
        details: dict[str, Any] = {
            "server_version": dig(root, "version"),
            "collection_count": count_of(dig(listing, "result", "collections"), "the collections route"),
        }
        if config.collection is not None:
            path = f"/collections/{quote(config.collection, safe='')}"
            info = await http.get_json(path, f"the collection {config.collection!r}")
            vectors = dig(info, "result", "config", "params", "vectors")
            if isinstance(vectors, dict) and "size" not in vectors:  # named vectors: the first
                vectors = next(iter(vectors.values()), None)
            size, distance = dig(vectors, "size"), dig(vectors, "distance")
            details.update(_collection_details(config.collection, size, distance))
        details["phases"] = http.phases
    return details


async def _probe_weaviate(ctx: ProbeContext, config: VectorConfig) -> dict[str, Any]:
    key = reveal(config.api_key)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with _http(ctx, config, headers, ctx.endpoint or "") as http:
        await _expect_ok(http, "/v1/.well-known/ready", "the readiness route")
        meta = await http.get_json("/v1/meta", "the meta route")
        schema = await http.get_json("/v1/schema", "the schema route")
        details: dict[str, Any] = {
            "server_version": dig(meta, "version"),
            "collection_count": count_of(dig(schema, "classes") or [], "the schema route"),
        }
        if config.collection is not None:
            path = f"/v1/schema/{quote(config.collection, safe='')}"
            info = await http.get_json(path, f"the class {config.collection!r}")
            distance = dig(info, "vectorIndexConfig", "distance")
            named = dig(info, "vectorConfig")
            if distance is None and isinstance(named, dict):  # named vectors: the first
                distance = dig(next(iter(named.values()), None), "vectorIndexConfig", "distance")
            # Weaviate's schema does not state the dimension.
            details.update(_collection_details(config.collection, None, distance))
        details["phases"] = http.phases
    return details


async def _probe_pinecone(ctx: ProbeContext, config: VectorConfig) -> dict[str, Any]:
    headers = {"Api-Key": reveal(config.api_key) or "", "X-Pinecone-API-Version": PINECONE_API_VERSION}
    async with _http(ctx, config, headers, ctx.endpoint or PINECONE_CONTROL_PLANE) as http:
        listing = await http.get_json("/indexes", "the indexes route")
        # The control plane has no version route: the API version is what we know.
        details: dict[str, Any] = {
            "server_version": None,
            "api_version": PINECONE_API_VERSION,
            "collection_count": count_of(dig(listing, "indexes") or [], "the indexes route"),
        }
        if config.collection is not None:
            path = f"/indexes/{quote(config.collection, safe='')}"
            info = await http.get_json(path, f"the index {config.collection!r}")
            details.update(
                _collection_details(config.collection, dig(info, "dimension"), dig(info, "metric"))
            )
            details["index_state"] = dig(info, "status", "state")
        details["phases"] = http.phases
    return details


async def _expect_ok(http: CheckedHttp, path: str, what: str) -> None:
    status, _, _ = await http.request("GET", path)
    error = status_error(status, what)
    if error is not None:
        raise error


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or ``None`` where the JSON has another shape (a stranger's server)."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def count_of(items: Any, what: str) -> int:
    """How many items a listing holds (a list, or a count the server gave)."""
    if isinstance(items, list):
        return len(items)
    if isinstance(items, int) and not isinstance(items, bool):
        return items
    raise ProbeError(
        ErrorKind.PROTOCOL, f"{what} did not answer the expected JSON: is this the right server?"
    )


# --- Milvus ---------------------------------------------------------------------------


async def _probe_milvus(ctx: ProbeContext, config: VectorConfig) -> dict[str, Any]:
    scheme, host, port, _ = parse_http_url(ctx.endpoint, default_port=DEFAULT_PORTS[VectorProvider.MILVUS])
    if scheme == "https" and not config.tls_verify:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "milvus over TLS always verifies the certificate")
    deadline = time.monotonic() + ctx.timeout
    phases: dict[str, float] = {}
    with timed(phases, "resolve_ms"):
        destinations = await ctx.network.resolve(host, port)
    address = destinations[0].address
    with timed(phases, "connect_ms"):
        # Tell refused and silent servers apart before gRPC folds both into one error.
        _, writer = await open_tcp(address, port, f"{host}:{port}", deadline)
        writer.close()
    token = reveal(config.api_key)
    if token is None and config.username:
        token = f"{config.username}:{reveal(config.password) or ''}"
    calls = functools.partial(_milvus_calls, scheme, host, address, port, token, config, deadline)
    try:
        # pymilvus bounds each call, but a safety net costs nothing: past the deadline
        # the probe answers and the thread is left to finish on its own.
        async with asyncio.timeout(max(deadline - time.monotonic(), 0) + 1.0):
            with timed(phases, "probe_ms"):
                details = await in_daemon_thread(calls)
    except TimeoutError as exc:
        raise ProbeError(ErrorKind.TIMEOUT, f"{host}:{port} did not answer in time") from exc
    except ProbeError:
        raise
    except Exception as exc:
        raise map_milvus_error(exc, f"{host}:{port}", timed_out=time.monotonic() >= deadline - 0.25) from exc
    return {**details, "phases": phases}


def in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """Run blocking driver work in a daemon thread (not ``asyncio.to_thread``): a call
    that never returns must neither hold a worker of the shared default executor nor
    keep the process from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        def settle() -> None:
            if not future.done():  # the probe may have given up (timeout, cancel)
                setter(value)

        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle)

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            deliver(future.set_exception, exc)
        else:
            deliver(future.set_result, result)

    threading.Thread(target=run, name="connectord-milvus", daemon=True).start()
    return future


def _milvus_calls(
    scheme: str, host: str, address: str, port: int, token: str | None, config: VectorConfig, deadline: float
) -> dict[str, Any]:
    from pymilvus import MilvusClient

    def left() -> float:
        return max(deadline - time.monotonic(), 0.05)

    literal = f"[{address}]" if ":" in address else address
    options: dict[str, Any] = {"dedicated": True}  # never share a channel with another connector
    with tempfile.TemporaryDirectory(prefix="connectord-milvus-") as folder:
        if scheme == "https":
            options.update(secure=True, server_name=host)  # verify the name while dialling the address
            if config.ca_pem:
                pem = os.path.join(folder, "ca.pem")
                with open(pem, "w", encoding="ascii") as out:
                    out.write(config.ca_pem)
                options["server_pem_path"] = pem
        client = MilvusClient(
            uri=f"{scheme}://{literal}:{port}",
            token=token or "",
            db_name=config.database or "",
            timeout=left(),
            **options,
        )
        try:
            details: dict[str, Any] = {
                "server_version": client.get_server_version(timeout=left()),
                "collection_count": len(client.list_collections(timeout=left())),
            }
            if config.collection is not None:
                details.update(_milvus_collection(client, config.collection, left))
        finally:
            client.close()
    return details


def _milvus_collection(client: Any, name: str, left: Callable[[], float]) -> dict[str, Any]:
    described = client.describe_collection(name, timeout=left())
    dimension = None
    vector_field = None
    for field in described.get("fields", []):
        dim = (field.get("params") or {}).get("dim")
        if dim is not None:
            dimension, vector_field = dim, field.get("name")
            break
    metric = None
    for index_name in client.list_indexes(name, field_name=vector_field or "", timeout=left()):
        metric = client.describe_index(name, index_name, timeout=left()).get("metric_type")
        if metric:
            break
    return _collection_details(name, int(dimension) if dimension is not None else None, metric)


def map_milvus_error(exc: BaseException, target: str, *, timed_out: bool = False) -> ProbeError:
    """A pymilvus or gRPC error as a :class:`ProbeError`.

    pymilvus reports a server that never completes the gRPC handshake and one
    that speaks another protocol alike (code 2): the time spent tells them apart.
    """
    import grpc
    from pymilvus import exceptions as mx

    rpc = first_in_chain(exc, grpc.RpcError)  # pymilvus wraps gRPC errors in a bare MilvusException
    if rpc is not None:
        code = rpc.code() if callable(getattr(rpc, "code", None)) else None
        kind = {
            grpc.StatusCode.UNAUTHENTICATED: ErrorKind.AUTH,
            grpc.StatusCode.PERMISSION_DENIED: ErrorKind.AUTH,
            grpc.StatusCode.DEADLINE_EXCEEDED: ErrorKind.TIMEOUT,
            grpc.StatusCode.UNAVAILABLE: ErrorKind.UNAVAILABLE,
            grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
        }.get(code, ErrorKind.PROTOCOL)
        return ProbeError(kind, f"Milvus at {target} answered gRPC {getattr(code, 'name', 'error')}")
    if isinstance(exc, mx.ParamError | mx.ConnectionConfigException):
        return ProbeError(ErrorKind.INVALID_CONFIG, f"invalid Milvus settings: {exc.message}")
    if isinstance(exc, mx.MilvusException):
        if exc.code == MILVUS_CONNECT_FAILED:
            if timed_out:
                return ProbeError(ErrorKind.TIMEOUT, f"{target} accepted but did not answer gRPC in time")
            return ProbeError(ErrorKind.PROTOCOL, f"{target} does not answer like a Milvus gRPC server")
        if exc.code in MILVUS_AUTH_CODES or exc.compatible_code == 3:
            return ProbeError(ErrorKind.AUTH, f"Milvus refused the credentials: {exc.message}")
        if exc.code in MILVUS_NOT_FOUND_CODES or isinstance(exc, mx.CollectionNotExistException):
            return ProbeError(ErrorKind.NOT_FOUND, f"Milvus: {exc.message}")
        return ProbeError(ErrorKind.UNEXPECTED_STATUS, f"Milvus answered an error (code {exc.code})")
    if isinstance(exc, TimeoutError):
        return ProbeError(ErrorKind.TIMEOUT, f"{target} did not answer in time")
    return ProbeError(ErrorKind.INTERNAL, f"the Milvus probe failed ({type(exc).__name__})")


_PROBES: dict[VectorProvider, Callable[[ProbeContext, VectorConfig], Awaitable[dict[str, Any]]]] = {
    VectorProvider.PGVECTOR: _probe_pgvector,
    VectorProvider.CHROMA: _probe_chroma,
    VectorProvider.MILVUS: _probe_milvus,
    VectorProvider.QDRANT: _probe_qdrant,
    VectorProvider.WEAVIATE: _probe_weaviate,
    VectorProvider.PINECONE: _probe_pinecone,
}
