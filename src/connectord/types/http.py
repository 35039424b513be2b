"""The ``http`` type: REST/HTTP APIs.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class HttpConfig(ConnectorConfig):
    """Config of a ``http`` connector."""


class HttpType(ConnectorType):
    """REST/HTTP APIs."""

    name: ClassVar[str] = "http"
    description: ClassVar[str] = "REST/HTTP APIs."
    config_model: ClassVar[type[ConnectorConfig]] = HttpConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.QUERY,
    )
