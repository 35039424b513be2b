"""The plugin API: what a third-party connector type imports.

A plugin subclasses :class:`ConnectorType` (and :class:`ConnectorConfig` for
its config model), implements ``probe(ctx: ProbeContext) -> ProbeOutcome``,
raises :class:`ProbeError` with an :class:`ErrorKind` when the connection
fails in a known way, declares the endpoints it accepts (an
:class:`EndpointRule`), reaches the network only through ``ctx.network`` (a
:class:`Network`: checked addresses, file roots, checked HTTP, TLS; a test
builds one from an :class:`EgressPolicy`), and is announced through the entry point group
``connectord.connector_types`` (``docs/plugins.md``). These names are the
contract with plugins; ``tests/test_plugin_api.py`` pins them.
"""

from connectord.errors import ProbeError
from connectord.model import Capability, ErrorKind
from connectord.network import EgressPolicy, Network
from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeOutcome
from connectord.types.endpoint import EndpointRule
from connectord.types.registry import ENTRY_POINT_GROUP

__all__ = [
    "ENTRY_POINT_GROUP",
    "Capability",
    "ConnectorConfig",
    "ConnectorType",
    "EgressPolicy",
    "EndpointRule",
    "ErrorKind",
    "Network",
    "ProbeContext",
    "ProbeError",
    "ProbeOutcome",
]
