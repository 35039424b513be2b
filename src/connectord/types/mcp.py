"""The ``mcp`` type: Model Context Protocol servers over streamable HTTP or SSE.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class McpConfig(ConnectorConfig):
    """Config of a ``mcp`` connector."""


class McpType(ConnectorType):
    """Model Context Protocol servers over streamable HTTP or SSE."""

    name: ClassVar[str] = "mcp"
    description: ClassVar[str] = "Model Context Protocol servers over streamable HTTP or SSE."
    config_model: ClassVar[type[ConnectorConfig]] = McpConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.QUERY,
    )
