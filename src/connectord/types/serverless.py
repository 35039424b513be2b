"""The ``serverless`` type: Serverless functions: HTTP functions and AWS Lambda.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class ServerlessConfig(ConnectorConfig):
    """Config of a ``serverless`` connector."""


class ServerlessType(ConnectorType):
    """Serverless functions: HTTP functions and AWS Lambda."""

    name: ClassVar[str] = "serverless"
    description: ClassVar[str] = "Serverless functions: HTTP functions and AWS Lambda."
    config_model: ClassVar[type[ConnectorConfig]] = ServerlessConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.QUERY,)
