"""The connector-type interface and the type registry.

A type is a small object: a name, a pydantic config model (its JSON Schema is
published; ``SecretStr`` fields are the secrets, marked ``writeOnly``), default
capabilities, and a probe. Probes know nothing of tenants or the store: they
take a :class:`ProbeContext` and return a :class:`ProbeOutcome` or raise
:class:`ProbeError`.

Built-in types are named by dotted path and imported on first use, so a
missing driver only matters to the type that needs it; third-party types
come from the entry point group ``connectord.connector_types`` (each entry
point names a :class:`ConnectorType` instance or a zero-argument factory).
"""

from __future__ import annotations

import importlib
import logging
import types as _pytypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectord.errors import UnknownConnectorTypeError
from connectord.model import Capability, ErrorKind

if TYPE_CHECKING:
    from connectord.egress import EgressPolicy

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "connectord.connector_types"


class ConnectorConfig(BaseModel):
    """Fields every type's config has. Subclass it; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Probe timeout in seconds (default: the server's; bounded by its maximum).",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password (a password written in the endpoint URL is moved here).",
    )


class ProbeError(Exception):
    """Raised by a probe: the connection failed in a known way.

    ``message`` is shown to the tenant: name the failure, never a secret or a trace.
    """

    def __init__(self, kind: ErrorKind, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


@dataclass(slots=True)
class ProbeContext:
    """What a probe gets: the endpoint, the full config (secrets included), its limits."""

    endpoint: str | None
    config: ConnectorConfig
    timeout: float
    egress: EgressPolicy
    file_roots: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProbeOutcome:
    """A successful probe: what it learned and, if it knows better, the capabilities."""

    details: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] | None = None


class ConnectorType:
    """A connector type. Subclasses set the class attributes and override :meth:`probe`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_model: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.READ,)

    def capabilities(self, config: ConnectorConfig) -> list[str]:
        """The capabilities a connector of this type has, before any test refines them."""
        return [str(c) for c in self.default_capabilities]

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Really connect. Types without a probe yet say so; they never fake success."""
        raise ProbeError(
            ErrorKind.UNSUPPORTED,
            f"testing {self.name} connectors is not supported yet by this server",
        )

    def describe(self) -> dict[str, Any]:
        """The public description: name, capabilities, config JSON Schema, and the
        choices of a ``provider`` or ``protocol`` field as ``providers``/``protocols``."""
        schema = self.config_model.model_json_schema()
        described: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "capabilities": [str(c) for c in self.default_capabilities],
            "config_schema": schema,
        }
        for name, key in (("provider", "providers"), ("protocol", "protocols")):
            choices = _choices(schema, name)
            if choices:
                described[key] = choices
        return described


def _choices(schema: Mapping[str, Any], field: str) -> list[str]:
    """The enum of a top-level field, following one ``$ref`` (or an ``anyOf`` with null)."""
    prop = schema.get("properties", {}).get(field, {})
    for option in [prop, *prop.get("anyOf", [])]:
        ref = option.get("$ref", "")
        target = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {}) if ref else option
        if "enum" in target:
            return [str(v) for v in target["enum"]]
    return []


# Built-ins by dotted path, imported on first use (fsspec's registry does the same).
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
