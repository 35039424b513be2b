"""The ``stream`` type: Message streams: Kafka, NATS, AMQP, MQTT, Redis streams.

Its probe comes with the probes issue.
"""

from __future__ import annotations

from typing import ClassVar

from connectord.model import Capability
from connectord.types.base import ConnectorConfig, ConnectorType


class StreamConfig(ConnectorConfig):
    """Config of a ``stream`` connector."""


class StreamType(ConnectorType):
    """Message streams: Kafka, NATS, AMQP, MQTT, Redis streams."""

    name: ClassVar[str] = "stream"
    description: ClassVar[str] = "Message streams: Kafka, NATS, AMQP, MQTT, Redis streams."
    config_model: ClassVar[type[ConnectorConfig]] = StreamConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.READ, Capability.STREAM)
