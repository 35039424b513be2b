"""Credential checkout: what ``POST /connectors/{id}/credentials`` answers (``docs/use.md``).

A checkout hands a workload a connector's endpoint and config with its secrets revealed,
for the types connectord cannot stand in front of: a SQL database, a message broker, a
bucket, a vector store speak their own protocols, so the workload connects itself. HTTP
and MCP connectors are used through the proxy and the gateway instead, which never let a
secret out: checking them out is refused (:data:`NOT_CHECKED_OUT`).

Where the type has one, the checkout carries a DSN: the one string a driver takes, with
the credentials in it (``postgresql://user:password@host:5432/db?sslmode=prefer``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from connectord.errors import ProbeError, ValidationError
from connectord.model import BuiltinType, Checkout, InUse
from connectord.types.base import reveal
from connectord.types.registry import TypeRegistry
from connectord.validation import check_config

if TYPE_CHECKING:
    from connectord.types.sql import SqlConfig
    from connectord.types.stream import StreamConfig

__all__ = ["NOT_CHECKED_OUT", "build_checkout"]

#: Types whose credentials are never checked out: the proxy (http) and the MCP gateway
#: (mcp) use them without showing them to anyone.
NOT_CHECKED_OUT = frozenset({BuiltinType.HTTP.value, BuiltinType.MCP.value})

#: Schemes of a stream DSN, by protocol and TLS.
_STREAM_SCHEMES = {
    ("kafka", False): "kafka",
    ("kafka", True): "kafka+ssl",
    ("nats", False): "nats",
    ("nats", True): "tls",
    ("amqp", False): "amqp",
    ("amqp", True): "amqps",
    ("mqtt", False): "mqtt",
    ("mqtt", True): "mqtts",
    ("redis", False): "redis",
    ("redis", True): "rediss",
}


def build_checkout(registry: TypeRegistry, used: InUse) -> Checkout:
    """The checkout of a connector opened for use (``purpose="checkout"``)."""
    info = used.info
    return Checkout(info.id, info.connector_type, used.endpoint, used.config, _dsn(registry, used))


def _dsn(registry: TypeRegistry, used: InUse) -> str | None:
    """The DSN of a sql or stream connector; ``None`` for the other types, and for a
    definition that no longer makes one (its test says why)."""
    kind = used.info.connector_type
    if kind not in (BuiltinType.SQL, BuiltinType.STREAM):
        return None
    # Imported here: the types' modules load on first use (types/registry.py).
    from connectord.types.sql import SqlConfig
    from connectord.types.stream import StreamConfig

    try:
        config = check_config(registry.get(kind), used.config)
        if isinstance(config, SqlConfig):
            return _sql_dsn(used.endpoint, config)
        if isinstance(config, StreamConfig):
            return _stream_dsn(used.endpoint, config)
    except (ProbeError, ValidationError):
        return None
    return None


def _userinfo(user: str | None, password: str | None) -> str:
    if user is None and password is None:
        return ""
    text = quote(user or "", safe="")
    if password is not None:
        text += ":" + quote(password, safe="")
    return text + "@"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _sql_dsn(endpoint: str | None, config: SqlConfig) -> str:
    from connectord.types.sql import Dialect, resolve_target

    target = resolve_target(endpoint, config)
    if target.dialect is Dialect.SQLITE:
        return f"sqlite:///{target.database or ''}"
    assert target.host is not None  # resolve_target refuses a server URL without a host
    auth = _userinfo(target.user, reveal(config.password))
    path = "/" + quote(target.database, safe="") if target.database else ""
    dsn = f"{target.dialect.value}://{auth}{_host(target.host)}:{target.port}{path}"
    if target.dialect is Dialect.POSTGRESQL:
        # libpq's and asyncpg's spelling; verify-full also needs the CA the config holds.
        dsn += f"?sslmode={config.ssl_mode.value}"
    return dsn


def _stream_dsn(endpoint: str | None, config: StreamConfig) -> str:
    from connectord.types.stream import stream_target

    target = stream_target(endpoint, config)
    scheme = _STREAM_SCHEMES[(target.protocol, target.tls)]
    secret = reveal(config.password)
    if target.protocol == "nats" and config.token is not None and secret is None:
        auth = quote(reveal(config.token) or "", safe="") + "@"
    else:
        auth = _userinfo(target.username, secret)
    where = f"{_host(target.host)}:{target.port}"
    if target.protocol == "amqp":
        vhost = config.virtual_host if config.virtual_host is not None else target.path.lstrip("/") or "/"
        return f"{scheme}://{auth}{where}/{quote(vhost, safe='')}"
    if target.protocol == "redis":
        database = config.database if config.database is not None else (target.path.lstrip("/") or "0")
        return f"{scheme}://{auth}{where}/{database}"
    return f"{scheme}://{auth}{where}"
