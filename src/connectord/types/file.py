"""The ``file`` type: File storage through fsspec: S3-compatible, GCS, Azure, local roots.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class FileConfig(ConnectorConfig):
    """Config of a ``file`` connector."""


class FileType(ConnectorType):
    """File storage through fsspec: S3-compatible, GCS, Azure, local roots."""

    name: ClassVar[str] = "file"
    description: ClassVar[str] = "File storage through fsspec: S3-compatible, GCS, Azure, local roots."
    config_model: ClassVar[type[ConnectorConfig]] = FileConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.READ, Capability.WRITE)
