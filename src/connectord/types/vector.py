"""The ``vector`` type: Vector databases: pgvector, Qdrant, Chroma, Weaviate, Pinecone, Milvus.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class VectorConfig(ConnectorConfig):
    """Config of a ``vector`` connector."""


class VectorType(ConnectorType):
    """Vector databases: pgvector, Qdrant, Chroma, Weaviate, Pinecone, Milvus."""

    name: ClassVar[str] = "vector"
    description: ClassVar[str] = "Vector databases: pgvector, Qdrant, Chroma, Weaviate, Pinecone, Milvus."
    config_model: ClassVar[type[ConnectorConfig]] = VectorConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ,
        Capability.WRITE,
        Capability.VECTOR_SEARCH,
    )
