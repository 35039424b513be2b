"""The ``stream`` type's Kafka probe (aiokafka) and its error mapping.

``map_kafka_error`` is public through ``connectord.types.stream``; import it from there.
"""

from __future__ import annotations

import logging
from typing import Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.types._stream_common import PROBE_NAME, Call, ErrorTable, map_driver_error


def map_kafka_error(exc: BaseException, where: str) -> ProbeError | None:
    """An aiokafka failure as a probe error; ``None`` if it is neither a driver nor a network failure."""
    from aiokafka import errors as k

    auth: tuple[type[BaseException], ...] = (
        k.SaslAuthenticationFailed,
        k.AuthenticationFailedError,
        k.AuthenticationMethodNotSupported,
    )
    auth += (k.UnsupportedSaslMechanismError, k.IllegalSaslStateError, k.SecurityDisabled)
    auth += (k.TopicAuthorizationFailedError, k.GroupAuthorizationFailedError)
    auth += (k.ClusterAuthorizationFailedError, k.TransactionalIdAuthorizationFailed)
    auth += (k.DelegationTokenAuthorizationFailed, k.DelegationTokenAuthDisabled)
    table: ErrorTable = (
        (auth, ErrorKind.AUTH),
        ((k.UnknownTopicOrPartitionError,), ErrorKind.NOT_FOUND),
        ((k.KafkaTimeoutError, k.RequestTimedOutError), ErrorKind.TIMEOUT),
        ((k.KafkaConfigurationError, k.IllegalArgumentError), ErrorKind.INVALID_CONFIG),
    )
    wrappers = (k.KafkaConnectionError, k.NoBrokersAvailable, k.NodeNotReadyError, k.KafkaUnavailableError)
    return map_driver_error(exc, where, table, wrappers, ("aiokafka",))


class _HideSaslRequests(logging.Filter):
    """aiokafka logs every request at DEBUG, and a SASL PLAIN request carries the password."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(type(arg).__name__.startswith("SaslAuthenticate") for arg in args)


_kafka_log_filter = _HideSaslRequests()


async def probe_kafka(call: Call) -> dict[str, Any]:
    """Connect to the checked broker (SASL and TLS as configured) and read the cluster's metadata."""
    # One connection to the checked address, not AIOKafkaClient: a client goes on to the
    # brokers that the metadata advertises, addresses the egress policy never saw.
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    logging.getLogger("aiokafka.conn").addFilter(_kafka_log_filter)  # adding it again is a no-op
    target, config = call.target, call.config
    mechanism = config.sasl_mechanism or ("PLAIN" if target.username else None)
    try:
        conn = await create_conn(
            call.address,
            target.port,
            client_id=PROBE_NAME,
            request_timeout_ms=int(call.bound * 1000),
            ssl_context=call.tls(),
            security_protocol=("SASL_" if mechanism else "") + ("SSL" if target.tls else "PLAINTEXT"),
            sasl_mechanism=mechanism,
            sasl_plain_username=target.username,
            sasl_plain_password=call.password,
        )
    except (KeyError, ValueError) as exc:
        if not mechanism:
            raise
        # aiokafka's SCRAM client fails this way on a server-final "e=..." message: a refusal.
        raise ProbeError(ErrorKind.AUTH, f"{target.where} refused the SASL credentials") from exc
    call.done("connect_ms")
    try:
        # Every topic (never auto-created, at any protocol version); the named one is looked up in it.
        metadata = (await conn.send(MetadataRequest(None, False))).to_object()
    finally:
        conn.close()
    call.done("probe_ms")
    topics = {t["topic"]: t for t in metadata["topics"]}
    details: dict[str, Any] = {
        "server_version": None,  # Kafka's protocol does not tell it
        "cluster_id": metadata.get("cluster_id"),
        "broker_count": len(metadata["brokers"]),
        "controller_id": metadata.get("controller_id"),
        "topic_count": sum(1 for t in topics.values() if not t.get("is_internal")),
    }
    if config.topic is not None:
        found = topics.get(config.topic)
        if found is None or found["error_code"] == 3:  # UNKNOWN_TOPIC_OR_PARTITION
            raise ProbeError(ErrorKind.NOT_FOUND, f"{target.where} has no topic {config.topic!r}")
        details["topic"] = {"name": config.topic, "partitions": len(found["partitions"])}
    return details
