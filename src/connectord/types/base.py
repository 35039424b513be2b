"""The connector-type interface: configs, probe contexts and outcomes.

A type is a small object: a name, a pydantic config model (its JSON Schema is
published; ``SecretStr`` fields are the secrets, marked ``writeOnly``), default
capabilities, and a probe. Probes know nothing of tenants or the store: they
take a :class:`ProbeContext` and return a :class:`ProbeOutcome` or raise
:class:`ProbeError`.

The registry of types is in :mod:`connectord.types.registry`; plugin authors
import these names from :mod:`connectord.plugin`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectord.errors import ProbeError
from connectord.model import Capability, ErrorKind
from connectord.types.endpoint import EndpointRule

if TYPE_CHECKING:
    from connectord.network import Network


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


@dataclass(slots=True)
class ProbeContext:
    """What a probe gets: the endpoint, the full config (secrets included), its limits."""

    endpoint: str | None
    config: ConnectorConfig
    timeout: float
    #: What the probe may reach: resolve, local paths, checked HTTP, TLS (``connectord.network``).
    network: Network
    options: dict[str, Any] = field(default_factory=dict)


def reveal(secret: SecretStr | None) -> str | None:
    """The value of an optional secret field."""
    return secret.get_secret_value() if secret is not None else None


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
    #: The endpoints the type accepts (published; checked when a definition is saved or
    #: tested). The default, for plugins: any ``scheme://host`` or ``host:port``.
    endpoint: ClassVar[EndpointRule] = EndpointRule(bare=True, credentials=True, user_alone=True)

    def endpoint_rule(self, config: ConnectorConfig) -> EndpointRule:
        """The endpoint rule for this config, when it narrows :attr:`endpoint` (a provider's)."""
        return self.endpoint

    async def prepare(self) -> None:
        """One-off set-up before this type's first test (the runner calls it outside the
        test's clock): what would otherwise make the first test slow. Nothing by default."""

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
            "endpoint": self.endpoint.describe(),
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
