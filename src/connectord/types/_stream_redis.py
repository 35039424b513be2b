"""The ``stream`` type's Redis streams probe (redis-py) and its error mapping.

``map_redis_error`` is public through ``connectord.types.stream``; import it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.types._stream_common import Call, ErrorTable, as_text, map_driver_error


def map_redis_error(exc: BaseException, where: str) -> ProbeError | None:
    """A redis-py failure as a probe error; ``None`` if it is neither a driver nor a network failure."""
    from redis import exceptions as r

    auth = (r.AuthenticationError, r.AuthorizationError, r.NoPermissionError)
    busy = (r.BusyLoadingError, r.MaxConnectionsError, r.ClusterDownError, r.TryAgainError)
    table: ErrorTable = (
        ((*auth, r.AuthenticationWrongNumberOfArgsError, r.ExternalAuthProviderError), ErrorKind.AUTH),
        ((r.TimeoutError,), ErrorKind.TIMEOUT),
        (busy, ErrorKind.UNAVAILABLE),
        ((r.DataError,), ErrorKind.INVALID_CONFIG),
    )
    return map_driver_error(exc, where, table, (r.ConnectionError,), ("redis",))


async def probe_redis(call: Call) -> dict[str, Any]:
    """Connect to the checked server, read INFO and, when a topic is set, the stream's length."""
    from redis.asyncio import Redis
    from redis.asyncio.connection import Connection, ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ResponseError

    target, config, tls = call.target, call.config, call.tls()

    class TLSConnection(Connection):
        """A connection whose stream is wrapped with our pinned-name context."""

        def _connection_arguments(self) -> Mapping[str, Any]:
            return {**super()._connection_arguments(), "ssl": tls}

    path = target.path.strip("/") or "0"
    if config.database is None and not path.isdigit():
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's path must be a Redis database number")
    database = config.database if config.database is not None else int(path)
    pool = ConnectionPool(
        connection_class=TLSConnection if tls else Connection,
        host=call.address,
        port=target.port,
        db=database,
        username=target.username,
        password=call.password,
        socket_connect_timeout=call.bound,
        socket_timeout=call.bound,
        retry=Retry(NoBackoff(), 0),  # redis-py otherwise retries for ~2.6 s
        max_connections=1,
        decode_responses=True,
    )
    client = Redis(connection_pool=pool)
    try:
        await client.ping()
        call.done("connect_ms")
        details: dict[str, Any] = {"server_version": None, "database": database}
        try:
            info = await client.info("server")
            details.update(server_version=info.get("redis_version"), mode=info.get("redis_mode"))
        except ResponseError:  # INFO may be renamed, or denied by an ACL (NoPermissionError)
            pass
        if config.topic is not None:
            key_type = as_text(await client.type(config.topic))
            if key_type == "none":
                raise ProbeError(ErrorKind.NOT_FOUND, f"{target.where} has no stream {config.topic!r}")
            if key_type != "stream":
                raise ProbeError(
                    ErrorKind.INVALID_CONFIG, f"{config.topic!r} holds a {key_type}, not a stream"
                )
            details["stream"] = {"name": config.topic, "length": await client.xlen(config.topic)}
        call.done("probe_ms")
        return details
    finally:
        await client.aclose()
        await pool.disconnect()
