"""The connector-type registry: built-ins by dotted path, plugins by entry point.

Built-in types are named by dotted path and imported on first use, so a
missing driver only matters to the type that needs it; third-party types
come from the entry point group ``connectord.connector_types`` (each entry
point names a :class:`~connectord.types.base.ConnectorType` instance or a
zero-argument factory). fsspec's ``registry.py`` is the model.

:data:`DRIVERS` is the table of built-in providers: the modules each one
imports when it probes and the command that installs them. The type listing
says from it which providers are installed, and :meth:`TypeRegistry.missing_driver`
turns a probe's ``ModuleNotFoundError`` into an ``unsupported`` result naming
that command, whichever probe (or plugin) raised it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import types as _pytypes
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from connectord.errors import ProbeError, UnknownConnectorTypeError
from connectord.model import ErrorKind
from connectord.types.base import ConnectorType

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "connectord.connector_types"

# Built-ins by dotted path, imported on first use.
BUILTIN_TYPES: dict[str, str] = {
    "custom": "connectord.types.custom:CustomType",
    "file": "connectord.types.file:FileType",
    "http": "connectord.types.http:HttpType",
    "mcp": "connectord.types.mcp:McpType",
    "serverless": "connectord.types.serverless:ServerlessType",
    "sql": "connectord.types.sql:SqlType",
    "stream": "connectord.types.stream:StreamType",
    "vector": "connectord.types.vector:VectorType",
}


@dataclass(frozen=True, slots=True)
class Driver:
    """What one provider of a built-in type imports to probe, and how to install it."""

    connector_type: str
    provider: str
    modules: tuple[str, ...]
    #: What installs the modules: a pip command, or what the server needs.
    install: str
    #: Further modules the probe imports when it runs (loaded ahead: :meth:`TypeRegistry.load_drivers`).
    preload: tuple[str, ...] = ()

    def installed(self) -> bool:
        """Whether every module can be imported (looked up, not imported)."""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def describe(self) -> dict[str, Any]:
        """The listing form: provider, installed, and the install command."""
        return {"provider": self.provider, "installed": self.installed(), "install": self.install}


def _core(package: str) -> str:
    # A core dependency is missing only from a broken or --no-deps install: name the package itself.
    return f"pip install {package}"


def _extra(name: str) -> str:
    return f"pip install 'connectord[{name}]'"


DRIVERS: tuple[Driver, ...] = (
    Driver(
        "file",
        "s3",
        ("s3fs", "aiobotocore", "botocore"),
        _core("s3fs"),
        ("aiobotocore.session", "aiobotocore.config", "botocore.exceptions"),
    ),
    Driver("file", "local", ("fsspec",), _core("fsspec")),
    Driver("http", "http", ("aiohttp",), _core("aiohttp"), ("yarl", "multidict")),
    Driver(
        "mcp",
        "mcp",
        ("mcp", "mcp_types", "httpx2"),
        _core("mcp"),
        # What the first connection imports: anyio's asyncio backend and the HTTP stack under httpx2.
        (
            "mcp.client.sse",
            "mcp.client.streamable_http",
            "mcp.shared.exceptions",
            "anyio._backends._asyncio",
            "httpcore2",
            "h11",
            "truststore",
        ),
    ),
    Driver("serverless", "http", ("aiohttp",), _core("aiohttp")),
    Driver(
        "serverless",
        "aws_lambda",
        ("aiobotocore", "botocore"),
        _core("aiobotocore"),
        ("aiobotocore.session", "aiobotocore.config", "botocore.exceptions"),
    ),
    Driver("sql", "postgresql", ("asyncpg",), _core("asyncpg"), ("asyncpg.exceptions",)),
    Driver("sql", "mysql", ("asyncmy",), _core("asyncmy")),
    Driver("sql", "sqlite", ("sqlite3",), "a Python built with sqlite3"),
    Driver(
        "stream", "kafka", ("aiokafka",), _core("aiokafka"), ("aiokafka.conn", "aiokafka.protocol.metadata")
    ),
    Driver("stream", "nats", ("nats",), _core("nats-py"), ("nats.aio.client", "nats.js.errors")),
    Driver("stream", "amqp", ("aio_pika", "aiormq"), _core("aio-pika")),
    Driver("stream", "mqtt", ("aiomqtt", "paho"), _core("aiomqtt")),
    Driver("stream", "redis", ("redis",), _core("redis"), ("redis.asyncio",)),
    Driver("vector", "pgvector", ("asyncpg",), _core("asyncpg")),
    Driver("vector", "chroma", ("aiohttp",), _core("aiohttp")),
    Driver("vector", "qdrant", ("aiohttp",), _core("aiohttp")),
    Driver("vector", "weaviate", ("aiohttp",), _core("aiohttp")),
    Driver("vector", "pinecone", ("aiohttp",), _core("aiohttp")),
    Driver("vector", "milvus", ("pymilvus", "grpc"), _extra("milvus")),
)


def _load_dotted(path: str) -> ConnectorType:
    module_name, _, attr = path.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    return obj() if callable(obj) else obj  # type: ignore[no-any-return]


class TypeRegistry:
    """Connector types by name: built-ins, entry-point plugins, and explicit registrations."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._types: dict[str, ConnectorType] = {}
        self._lazy: dict[str, str] = dict(BUILTIN_TYPES)
        if load_entry_points:
            self._load_plugins()

    def _load_plugins(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._lazy:
                logger.warning("plugin type %r ignored: the name is built in", ep.name)
                continue
            self._lazy[ep.name] = ep.value

    def register(self, ctype: ConnectorType, *, clobber: bool = False) -> None:
        """Add a type; an existing name is refused unless ``clobber``."""
        if not clobber and (ctype.name in self._types or ctype.name in self._lazy):
            raise ValueError(f"connector type {ctype.name!r} is already registered")
        self._lazy.pop(ctype.name, None)
        self._types[ctype.name] = ctype

    def get(self, name: str) -> ConnectorType:
        """The type of that name; :class:`UnknownConnectorTypeError` if there is none."""
        found = self._types.get(name)
        if found is not None:
            return found
        path = self._lazy.get(name)
        if path is None:
            raise UnknownConnectorTypeError(name, self.names())
        try:
            ctype = _load_dotted(path)
        except (ImportError, AttributeError) as exc:
            # A missing driver or a broken plugin: say which, never crash the caller.
            raise UnknownConnectorTypeError(
                name, self.names(), reason=f"it could not be loaded ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(ctype, ConnectorType) or ctype.name != name:
            raise UnknownConnectorTypeError(
                name, self.names(), reason=f"{path} is not a ConnectorType named {name!r}"
            )
        self._types[name] = ctype
        return ctype

    def drivers(self, name: str) -> list[Driver]:
        """The built-in providers of a type (none for a plugin type)."""
        return [d for d in DRIVERS if d.connector_type == name]

    def load_drivers(self, name: str) -> None:
        """Import what the probes of type ``name`` import (blocking: run it in a thread), so a
        test never times a driver's import, nor blocks the event loop with it. A missing
        module is left for the probe to report."""
        try:
            self.get(name)  # the type's own module, imported on first use
        except UnknownConnectorTypeError:
            return
        for driver in self.drivers(name):
            for module in (*driver.modules, *driver.preload):
                try:
                    importlib.import_module(module)
                except ImportError:
                    continue

    def describe(self, ctype: ConnectorType) -> dict[str, Any]:
        """A type's public description with its providers' ``drivers`` (installed or not)."""
        return {**ctype.describe(), "drivers": [d.describe() for d in self.drivers(ctype.name)]}

    def missing_driver(self, name: str, exc: ModuleNotFoundError) -> ProbeError:
        """The ``unsupported`` error for a probe of type ``name`` that could not import a module."""
        module = (exc.name or "").partition(".")[0]
        candidates = self.drivers(name)
        driver = next((d for d in candidates if module in d.modules), None)
        if driver is not None:
            return ProbeError(
                ErrorKind.UNSUPPORTED,
                f"testing {driver.provider} {name} connectors needs the {module} module, "
                f"not installed on this server: {driver.install}",
            )
        # A module a driver needs in turn, or a plugin's own dependency: its package is unknown here.
        return ProbeError(
            ErrorKind.UNSUPPORTED,
            f"the {name} probe needs the {module or 'a'} module, not installed on this server: "
            "install the package that provides it",
        )

    def names(self) -> list[str]:
        """Every type name, sorted."""
        return sorted({*self._types, *self._lazy})

    def types(self) -> Mapping[str, ConnectorType]:
        """A read-only view of every type that loads; a broken plugin is logged and left out."""
        loaded: dict[str, ConnectorType] = {}
        for name in self.names():
            try:
                loaded[name] = self.get(name)
            except UnknownConnectorTypeError as exc:
                logger.warning("connector type %r left out: %s", name, exc.message)
        return _pytypes.MappingProxyType(loaded)

    def __contains__(self, name: object) -> bool:
        return name in self._types or name in self._lazy
