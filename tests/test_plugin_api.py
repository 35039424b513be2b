"""The plugin API is published from one module, ``connectord.plugin``, and pinned here:
a change to it is a change of the contract with every third-party connector type."""

from __future__ import annotations

import dataclasses

import connectord.plugin
from connectord import errors, network
from connectord.types import base

PLUGIN_API = [
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


def test_the_plugin_api_is_exactly_these_names() -> None:
    assert connectord.plugin.__all__ == PLUGIN_API
    for name in PLUGIN_API:
        assert hasattr(connectord.plugin, name), name


def test_a_probe_context_holds_exactly_these_fields() -> None:
    fields = [f.name for f in dataclasses.fields(connectord.plugin.ProbeContext)]
    assert fields == ["endpoint", "config", "timeout", "network", "options"]


def test_plugin_names_are_the_core_classes_not_copies() -> None:
    assert connectord.plugin.Network is network.Network
    assert connectord.plugin.ProbeError is errors.ProbeError
    assert connectord.plugin.ConnectorType is base.ConnectorType
    assert issubclass(errors.ProbeError, errors.ConnectordError)


def test_probe_error_keeps_kind_message_and_details() -> None:
    exc = connectord.plugin.ProbeError(connectord.plugin.ErrorKind.TIMEOUT, "no answer", {"phase": "connect"})
    assert (exc.kind, exc.message, exc.details, str(exc)) == (
        "timeout",
        "no answer",
        {"phase": "connect"},
        "no answer",
    )
