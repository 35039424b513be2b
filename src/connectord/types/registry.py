"""The connector-type registry: built-ins by dotted path, plugins by entry point.

Built-in types are named by dotted path and imported on first use, so a
missing driver only matters to the type that needs it; third-party types
come from the entry point group ``connectord.connector_types`` (each entry
point names a :class:`~connectord.types.base.ConnectorType` instance or a
zero-argument factory). fsspec's ``registry.py`` is the model.
"""

from __future__ import annotations

import importlib
import logging
import types as _pytypes
from collections.abc import Mapping
from importlib.metadata import entry_points

from connectord.errors import UnknownConnectorTypeError
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
