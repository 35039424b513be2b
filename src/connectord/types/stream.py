"""The ``stream`` type: Kafka, NATS, AMQP (RabbitMQ), MQTT and Redis streams.

One config model with a ``protocol`` field (or the endpoint's scheme) and one
probe per protocol. Each probe connects to the address the egress policy
checked, never to the name again; with TLS on, :class:`PinnedNameContext` makes
the handshake verify the connector's host name although the driver only knows
the address. Each protocol has one function translating its driver's
exceptions (``map_kafka_error`` ... ``map_redis_error``). ``docs/stream-probe.md``
has the decisions.

This module holds the config, the endpoint parsing, the dispatch and the type;
each protocol's probe and error mapping is in a private module (``_stream_kafka``,
``_stream_nats``, ``_stream_amqp``, ``_stream_mqtt``, ``_stream_redis``) and what
they share in ``_stream_common``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, model_validator

from connectord.model import Capability, ErrorKind
from connectord.network.tls import CaPem
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.types._stream_amqp import map_amqp_error, probe_amqp
from connectord.types._stream_common import Call
from connectord.types._stream_kafka import _kafka_log_filter as _kafka_log_filter  # tests check it
from connectord.types._stream_kafka import map_kafka_error, probe_kafka
from connectord.types._stream_mqtt import map_mqtt_error, probe_mqtt
from connectord.types._stream_nats import map_nats_error, probe_nats
from connectord.types._stream_redis import map_redis_error, probe_redis
from connectord.types.endpoint import EndpointRule

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_TLS_PORTS",
    "PROTOCOL_FIELDS",
    "SCHEMES",
    "Protocol",
    "StreamConfig",
    "StreamTarget",
    "StreamType",
    "map_amqp_error",
    "map_kafka_error",
    "map_mqtt_error",
    "map_nats_error",
    "map_redis_error",
    "protocol_problem",
    "stream_target",
]

Protocol = Literal["kafka", "nats", "amqp", "mqtt", "redis"]
#: Endpoint scheme -> (protocol, TLS implied).
SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "kafka": ("kafka", False),
    "nats": ("nats", False),
    "amqp": ("amqp", False),
    "amqps": ("amqp", True),
    "mqtt": ("mqtt", False),
    "mqtts": ("mqtt", True),
    "redis": ("redis", False),
    "rediss": ("redis", True),
}
DEFAULT_PORTS: dict[str, int] = {"kafka": 9092, "nats": 4222, "amqp": 5672, "mqtt": 1883, "redis": 6379}
DEFAULT_TLS_PORTS: dict[str, int] = {**DEFAULT_PORTS, "kafka": 9093, "amqp": 5671, "mqtt": 8883}
#: Fields that mean something to one protocol only; setting one for another protocol is refused.
PROTOCOL_FIELDS: dict[str, Protocol] = {
    "sasl_mechanism": "kafka",
    "token": "nats",
    "amqp_entity": "amqp",
    "virtual_host": "amqp",
    "mqtt_version": "mqtt",
    "client_id": "mqtt",
    "database": "redis",
}
_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_NATS_STREAM = re.compile(r"^[^\s.*>/\\\x00-\x1f]{1,255}$")


class StreamConfig(ConnectorConfig):
    """Config of a ``stream`` connector. The password is the base ``password`` field."""

    protocol: Protocol | None = Field(
        default=None, description="kafka, nats, amqp, mqtt or redis (default: from the endpoint's scheme)."
    )
    topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="What to look up: a Kafka topic, a NATS JetStream stream, an AMQP queue or exchange, "
        "an MQTT topic filter (validated, not subscribed) or a Redis stream key.",
    )
    amqp_entity: Literal["queue", "exchange"] = Field(
        default="queue", description="AMQP: whether the topic names a queue or an exchange."
    )
    virtual_host: str | None = Field(
        default=None, description="AMQP virtual host (default: the URL path, else /)."
    )
    database: int | None = Field(
        default=None, ge=0, description="Redis database (default: the URL path, else 0)."
    )
    username: str | None = Field(default=None, description="User name (default: the endpoint URL's, if any).")
    token: SecretStr | None = Field(default=None, description="NATS authentication token.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="Kafka SASL mechanism (default PLAIN when a username is set)."
    )
    mqtt_version: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT protocol version.")
    client_id: str | None = Field(
        default=None, max_length=128, description="MQTT client id (default: a random connectord-probe-* id)."
    )
    tls: bool | None = Field(default=None, description="Use TLS (default: amqps, mqtts and rediss mean TLS).")
    tls_verify: bool = Field(default=True, description="Verify the server certificate and host name.")
    ca_pem: CaPem = Field(default=None, description="Extra CA certificates to trust, as PEM text.")

    @model_validator(mode="after")
    def _fits_protocol(self) -> StreamConfig:
        problem = protocol_problem(self, self.protocol) if self.protocol else None
        if problem:
            raise ValueError(problem)
        return self


def protocol_problem(config: StreamConfig, protocol: Protocol) -> str | None:
    """Why the config does not fit the protocol (a foreign field, a bad topic), or ``None``."""
    for name in sorted(config.model_fields_set):
        owner = PROTOCOL_FIELDS.get(name)
        if owner is not None and owner != protocol:
            return f"{name} applies to {owner} only, not {protocol}"
    topic = config.topic
    if topic is None:
        return None
    if protocol == "kafka" and not _KAFKA_TOPIC.match(topic):
        return "a Kafka topic is 1-249 letters, digits, '.', '_' or '-'"
    if protocol == "nats" and not _NATS_STREAM.match(topic):
        return "a NATS stream name has no spaces, '.', '*', '>' or path separators"
    if protocol == "amqp" and len(topic.encode()) > 255:
        return "an AMQP queue or exchange name is at most 255 bytes"
    if protocol == "mqtt":
        levels = topic.split("/")
        if any("#" in lv and (lv != "#" or i < len(levels) - 1) for i, lv in enumerate(levels)):
            return "in an MQTT topic filter '#' must be the whole last level"
        if any("+" in lv and lv != "+" for lv in levels) or "\x00" in topic:
            return "in an MQTT topic filter '+' must be a whole level (and NUL is not allowed)"
    return None


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where and how to connect, from the endpoint and the config."""

    protocol: Protocol
    host: str
    port: int
    tls: bool
    username: str | None
    path: str

    @property
    def where(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"


def stream_target(endpoint: str | None, config: StreamConfig) -> StreamTarget:
    """The target of a probe; :class:`ProbeError` (``invalid_config``) if endpoint and config disagree."""
    if not endpoint:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is required (e.g. kafka://broker:9092)")
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"tcp://{endpoint}")
        port = parts.port
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's port is not a number") from exc
    scheme = parts.scheme.lower()
    by_scheme = SCHEMES.get(scheme)
    if by_scheme is None and scheme != "tcp":
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"unknown stream scheme {scheme!r}")
    protocol = config.protocol or (by_scheme[0] if by_scheme else None)
    if protocol is None:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "set protocol, or use a scheme such as nats://")
    if by_scheme and by_scheme[0] != protocol:
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"the endpoint is {scheme}:// but protocol is {protocol}")
    problem = protocol_problem(config, protocol)
    if problem or not parts.hostname:
        raise ProbeError(ErrorKind.INVALID_CONFIG, problem or "the endpoint needs a host")
    tls = config.tls if config.tls is not None else bool(by_scheme and by_scheme[1])
    port = port or (DEFAULT_TLS_PORTS if tls else DEFAULT_PORTS)[protocol]
    username = config.username or (unquote(parts.username) if parts.username else None)
    return StreamTarget(protocol, parts.hostname, port, tls, username, unquote(parts.path))


ProbeFn = Callable[[Call], Awaitable[dict[str, Any]]]
Mapper = Callable[[BaseException, str], ProbeError | None]
_PROBES: dict[str, tuple[ProbeFn, Mapper]] = {
    "kafka": (probe_kafka, map_kafka_error),
    "nats": (probe_nats, map_nats_error),
    "amqp": (probe_amqp, map_amqp_error),
    "mqtt": (probe_mqtt, map_mqtt_error),
    "redis": (probe_redis, map_redis_error),
}


class StreamType(ConnectorType):
    """Message streams: connect, authenticate, read server info and topic metadata."""

    name: ClassVar[str] = "stream"
    description: ClassVar[str] = "Message streams: Kafka, NATS, AMQP (RabbitMQ), MQTT, Redis streams."
    endpoint: ClassVar[EndpointRule] = EndpointRule(
        schemes=("kafka", "nats", "amqp", "amqps", "mqtt", "mqtts", "redis", "rediss", "tcp"),
        bare=True,
        credentials=True,
        user_alone=True,
    )
    config_model: ClassVar[type[ConnectorConfig]] = StreamConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.READ, Capability.STREAM)

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Connect and authenticate, then read server info and the named topic, within ``ctx.timeout``."""
        config = ctx.config
        assert isinstance(config, StreamConfig)
        target = stream_target(ctx.endpoint, config)
        run, mapper = _PROBES[target.protocol]
        start = time.perf_counter()
        destination = (await ctx.network.resolve(target.host, target.port))[0]
        # Drivers get a little less than the bound, so they fail on their own, cleanly,
        # before the bound (ours here, the facade's around us) cancels them.
        left = ctx.timeout - (time.perf_counter() - start)
        call = Call(target, destination.address, config, max(left - min(0.25, left / 20), 0.05), _mark=start)
        call.done("resolve_ms")
        try:
            async with asyncio.timeout(ctx.timeout):
                details = await run(call)
        except ProbeError:
            raise
        except Exception as exc:
            mapped = None if isinstance(exc, TimeoutError) else mapper(exc, target.where)
            if mapped is None and not isinstance(exc, TimeoutError):
                raise
            if mapped is None or mapped.kind == ErrorKind.TIMEOUT:  # one wording, with the bound
                mapped = ProbeError(
                    ErrorKind.TIMEOUT, f"no answer from {target.where} within {ctx.timeout:g} s"
                )
            raise mapped from exc
        details.update(
            protocol=target.protocol, address=destination.address, port=target.port, tls=target.tls
        )
        details["phases"] = call.phases
        return ProbeOutcome(details=details)
