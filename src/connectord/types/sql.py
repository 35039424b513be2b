"""The ``sql`` type: PostgreSQL, MySQL/MariaDB and SQLite databases.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class SqlConfig(ConnectorConfig):
    """Config of a ``sql`` connector."""


class SqlType(ConnectorType):
    """PostgreSQL, MySQL/MariaDB and SQLite databases."""

    name: ClassVar[str] = "sql"
    description: ClassVar[str] = "PostgreSQL, MySQL/MariaDB and SQLite databases."
    config_model: ClassVar[type[ConnectorConfig]] = SqlConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.QUERY,
        Capability.TRANSACTION,
    )
