"""The ``stream`` type: Kafka, NATS, AMQP (RabbitMQ), MQTT and Redis streams.

One config model with a ``protocol`` field (or the endpoint's scheme) and one
probe per protocol. Each probe connects to the address the egress policy
checked, never to the name again; with TLS on, :class:`PinnedNameContext` makes
the handshake verify the connector's host name although the driver only knows
the address. Each protocol has one function translating its driver's
exceptions (``map_kafka_error`` ... ``map_redis_error``). ``docs/stream-probe.md``
has the decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from connectord.model import Capability, ErrorKind
from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome

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
_PROBE_NAME = "connectord-probe"


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
    ca_pem: str | None = Field(default=None, description="Extra CA certificates to trust, as PEM text.")

    @field_validator("ca_pem")
    @classmethod
    def _pem_text(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----...), not a file path")
        return value

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


class PinnedNameContext(ssl.SSLContext):
    """A client TLS context that verifies ``pinned_name`` whatever name the driver passes.

    Drivers take one host argument and use it both to connect and as the TLS
    name; we hand them the checked address, so the context puts the connector's
    host name back into the handshake (SNI and the certificate check).
    """

    pinned_name: str
    #: Blocking sockets this context wrapped: paho leaves one open when its handshake fails.
    wrapped: list[ssl.SSLSocket]

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """Wrap for asyncio's TLS transport, with the pinned name."""
        name = server_hostname if server_side else self.pinned_name
        return super().wrap_bio(incoming, outgoing, server_side, name, session)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap a blocking socket (paho-mqtt), with the pinned name."""
        name = server_hostname if server_side else self.pinned_name
        wrapped = super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, name, session
        )
        self.wrapped.append(wrapped)
        return wrapped


def pinned_tls_context(host: str, verify: bool, ca_pem: str | None) -> PinnedNameContext:
    """A client context for ``host``: the system CAs (or ``ca_pem``), verification as configured."""
    ctx = PinnedNameContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.pinned_name = host
    ctx.wrapped = []
    try:
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem)
        else:
            ctx.load_default_certs()
    except (ssl.SSLError, ValueError) as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "ca_pem holds no valid PEM certificate") from exc
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- error mapping -------------------------------------------------------------------

_STDLIB_MODULES = frozenset({"builtins", "ssl", "socket", "asyncio.exceptions"})
_MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.AUTH: "{where} refused the credentials ({name})",
    ErrorKind.NOT_FOUND: "{where} has no such topic, stream, queue or exchange ({name})",
    ErrorKind.TIMEOUT: "no answer from {where} in time",
    ErrorKind.TLS: "the TLS settings do not match {where} ({name})",
    ErrorKind.PROTOCOL: "{where} answered with a protocol error ({name})",
    ErrorKind.UNAVAILABLE: "{where} cannot serve the request now ({name})",
    ErrorKind.INVALID_CONFIG: "{where} refused a setting ({name})",
    ErrorKind.INTERNAL: "the client was misused ({name})",
}
ErrorTable = tuple[tuple[tuple[type[BaseException], ...], ErrorKind], ...]


def _network_error(exc: BaseException, where: str) -> ProbeError | None:
    """Timeouts, refusals, TLS, DNS and socket failures anywhere in the exception's chain.

    Only standard-library exceptions count here: a driver's own class that
    subclasses ``OSError`` (aiormq's) is the protocol mapping's business.
    """
    node: BaseException | None = exc
    for _ in range(8):  # chains are short; the bound guards against cycles
        if node is None:
            return None
        found = _stdlib_error(node, where) if type(node).__module__ in _STDLIB_MODULES else None
        if found is not None:
            return found
        node = node.__cause__ or node.__context__
    return None


def _stdlib_error(node: BaseException, where: str) -> ProbeError | None:
    if isinstance(node, ssl.SSLError):
        reason = getattr(node, "verify_message", None) or getattr(node, "reason", None) or "handshake failed"
        return ProbeError(ErrorKind.TLS, f"TLS with {where} failed: {reason}")
    if isinstance(node, TimeoutError):
        return ProbeError(ErrorKind.TIMEOUT, f"no answer from {where} in time")
    if isinstance(node, ConnectionRefusedError):
        return ProbeError(ErrorKind.REFUSED, f"connection refused by {where}")
    if isinstance(node, socket.gaierror):
        return ProbeError(ErrorKind.DNS, f"cannot resolve {where}")
    if isinstance(node, (ConnectionError, EOFError, asyncio.IncompleteReadError)):
        return ProbeError(ErrorKind.UNAVAILABLE, f"{where} closed the connection (wrong protocol or TLS?)")
    if isinstance(node, OSError):
        return ProbeError(ErrorKind.UNAVAILABLE, f"cannot connect to {where}: {node.strerror or 'OS error'}")
    return None


def _map(
    exc: BaseException,
    where: str,
    table: ErrorTable,
    wrappers: tuple[type[BaseException], ...],
    packages: tuple[str, ...],
) -> ProbeError | None:
    """The shape of every mapping: the driver's table first, then a network cause in
    the chain, then a connection wrapper as ``unavailable``, then any other class
    of the driver as ``protocol``; ``None`` for an exception no driver raised."""
    name = type(exc).__name__
    for classes, kind in table:
        if isinstance(exc, classes):
            return ProbeError(kind, _MESSAGES[kind].format(where=where, name=name))
    network = _network_error(exc, where)
    if network is not None:
        return network
    if isinstance(exc, wrappers):
        return ProbeError(ErrorKind.UNAVAILABLE, f"{where} closed the connection ({name})")
    if type(exc).__module__.split(".")[0] in packages:
        return ProbeError(ErrorKind.PROTOCOL, _MESSAGES[ErrorKind.PROTOCOL].format(where=where, name=name))
    return None


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
    return _map(exc, where, table, wrappers, ("aiokafka",))


def map_nats_error(exc: BaseException, where: str) -> ProbeError | None:
    """A nats-py failure as a probe error; ``None`` if it is neither a driver nor a network failure."""
    from nats import errors as n
    from nats.js import errors as js

    # nats-py raises its plain Error carrying the server's -ERR text for most refusals.
    if isinstance(exc, n.Error) and re.search(r"authori[sz]ation|authentication|permission", _str(exc), re.I):
        return ProbeError(ErrorKind.AUTH, f"{where} refused the credentials")
    table: ErrorTable = (
        ((n.AuthorizationError, n.InvalidUserCredentialsError), ErrorKind.AUTH),
        ((js.NotFoundError,), ErrorKind.NOT_FOUND),
        ((n.TimeoutError,), ErrorKind.TIMEOUT),
        ((n.SecureConnRequiredError, n.SecureConnWantedError, n.SecureConnFailedError), ErrorKind.TLS),
        ((js.ServiceUnavailableError, n.NoRespondersError), ErrorKind.UNAVAILABLE),
    )
    wrappers = (n.NoServersError, n.ConnectionClosedError, n.StaleConnectionError)
    return _map(exc, where, table, wrappers, ("nats",))


def map_amqp_error(exc: BaseException, where: str) -> ProbeError | None:
    """An aio-pika/aiormq failure as a probe error; ``None`` if neither a driver nor a network failure."""
    from aiormq import exceptions as a

    auth = (a.AuthenticationError, a.ProbableAuthenticationError, a.ChannelAccessRefused)
    protocol = (a.IncompatibleProtocolError, a.ProtocolSyntaxError, a.ConnectionSyntaxError)
    table: ErrorTable = (
        ((*auth, a.ConnectionNotAllowed), ErrorKind.AUTH),
        ((a.ChannelNotFoundEntity,), ErrorKind.NOT_FOUND),
        ((*protocol, a.ConnectionFrameError, a.ConnectionUnexpectedFrame), ErrorKind.PROTOCOL),
        ((a.ConnectionResourceError, a.ConnectionInternalError), ErrorKind.UNAVAILABLE),
    )
    # aiormq reports a Connection.Close in place of Open-Ok as a bad frame: RabbitMQ's
    # NOT_ALLOWED, for a virtual host that is missing or closed to this user.
    if isinstance(exc, a.InvalidFrameError) and "got <Connection.Close" in _str(exc):
        return ProbeError(ErrorKind.AUTH, f"{where} refused the virtual host (missing, or not allowed)")
    return _map(exc, where, table, (a.AMQPConnectionError, a.ChannelClosed), ("aiormq", "aio_pika", "pamqp"))


#: CONNACK codes: MQTT 3.1.1 return codes (1-5) and MQTT 5 reason codes (128 and up).
_MQTT_CONNACK: dict[int, ErrorKind] = {
    **dict.fromkeys((1, 132), ErrorKind.PROTOCOL),
    **dict.fromkeys((2, 133), ErrorKind.INVALID_CONFIG),
    **dict.fromkeys((3, 136, 137, 159), ErrorKind.UNAVAILABLE),
    **dict.fromkeys((4, 5, 134, 135, 138, 140), ErrorKind.AUTH),
}


def map_mqtt_error(exc: BaseException, where: str) -> ProbeError | None:
    """An aiomqtt failure as a probe error; ``None`` if it is neither a driver nor a network failure."""
    from aiomqtt import exceptions as m

    if isinstance(exc, m.MqttConnectError):
        code = exc.rc if isinstance(exc.rc, int) else int(getattr(exc.rc, "value", 0))
        kind = _MQTT_CONNACK.get(code, ErrorKind.PROTOCOL)
        what = "the credentials" if kind == ErrorKind.AUTH else "the connection"
        return ProbeError(kind, f"{where} refused {what} (CONNACK code {code})")
    table: ErrorTable = (((m.MqttReentrantError,), ErrorKind.INTERNAL),)
    return _map(exc, where, table, (m.MqttError,), ("aiomqtt", "paho"))


def map_redis_error(exc: BaseException, where: str) -> ProbeError | None:
    """A redis-py failure as a probe error; ``None`` if it is neither a driver nor a network failure."""
    from redis import exceptions as r

    auth = (r.AuthenticationError, r.AuthorizationError, r.NoPermissionError)
    busy = (r.BusyLoadingError, r.MaxConnectionsError, r.ClusterDownError, r.TryAgainError)
    table: ErrorTable = (
        ((*auth, r.AuthenticationWrongNumberOfArgsError, r.ExternalAuthProviderError), ErrorKind.AUTH),
        ((r.TimeoutError,), ErrorKind.TIMEOUT),
        (busy, ErrorKind.UNAVAILABLE),
        ((r.DataError,), ErrorKind.INVALID_CONFIG),
    )
    return _map(exc, where, table, (r.ConnectionError,), ("redis",))


# --- probes --------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """One probe run: the target, the checked address, the config, the time bound, the phases so far."""

    target: StreamTarget
    address: str
    config: StreamConfig
    bound: float
    phases: dict[str, float] = field(default_factory=dict)
    _mark: float = field(default_factory=time.perf_counter)

    def done(self, phase: str) -> None:
        """Record the time since the last phase ended."""
        now = time.perf_counter()
        self.phases[phase] = round((now - self._mark) * 1000, 3)
        self._mark = now

    @property
    def password(self) -> str | None:
        """The password's value, for the driver."""
        return _secret(self.config.password)

    def tls(self) -> PinnedNameContext | None:
        """The TLS context, if TLS is on."""
        if not self.target.tls:
            return None
        return pinned_tls_context(self.target.host, self.config.tls_verify, self.config.ca_pem)


def _str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - some drivers' __str__ needs fields a bare instance lacks
        return ""


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if value is not None else None


class _HideSaslRequests(logging.Filter):
    """aiokafka logs every request at DEBUG, and a SASL PLAIN request carries the password."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(type(arg).__name__.startswith("SaslAuthenticate") for arg in args)


_kafka_log_filter = _HideSaslRequests()


async def _probe_kafka(call: _Call) -> dict[str, Any]:
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
            client_id=_PROBE_NAME,
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


async def _probe_nats(call: _Call) -> dict[str, Any]:
    from nats.aio.client import Client
    from nats.errors import Error as NatsError
    from nats.errors import NoServersError, SecureConnWantedError
    from nats.js.errors import NotFoundError

    target, config = call.target, call.config

    class TLSClient(Client):
        """nats-py upgrades to TLS only when the server requires it, and would otherwise send
        the credentials in clear; with TLS configured, we upgrade or stop before CONNECT."""

        async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
            if initial_connection:
                if not (info.get("tls_required") or info.get("tls_available")):
                    raise SecureConnWantedError
                info["tls_required"] = True  # the INFO dict nats-py consults next, before CONNECT
            await super()._process_info(info, initial_connection)

    client = TLSClient() if target.tls else Client()
    failures: list[Exception] = []

    async def on_error(exc: Exception) -> None:  # keeps the cause that NoServersError hides
        failures.append(exc)

    try:
        try:
            # Without these nats-py retries for ever; reconnect_time_wait=0 drops its 2 s pause.
            await client.connect(
                servers=[f"{'tls' if target.tls else 'nats'}://{call.address}:{target.port}"],
                name=_PROBE_NAME,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=call.bound,  # type: ignore[arg-type]  # annotated int, used as a float
                error_cb=on_error,
                tls=call.tls(),
                tls_hostname=target.host if target.tls else None,
                user=target.username,
                password=call.password,
                token=_secret(config.token),
            )
        except NoServersError as exc:
            raise (failures[0] if failures else exc) from None
        call.done("connect_ms")
        info: Mapping[str, Any] = getattr(client, "_server_info", {})  # nats-py has no public INFO
        details: dict[str, Any] = {
            "server_version": info.get("version"),
            "server_id": info.get("server_id"),
            "server_name": info.get("server_name"),
            "max_payload": info.get("max_payload"),
            "jetstream": bool(info.get("jetstream")),
        }
        jsm = client.jsm(timeout=call.bound)
        if details["jetstream"]:
            try:
                details["jetstream_streams"] = (await jsm.account_info()).streams
            except (NatsError, TimeoutError):  # the account may have no JetStream; the count is extra
                details["jetstream_streams"] = None
        if config.topic is not None:
            if not details["jetstream"]:
                raise ProbeError(ErrorKind.NOT_FOUND, f"JetStream is off on {target.where}: no streams")
            try:
                state = (await jsm.stream_info(config.topic)).state
            except NotFoundError as exc:
                raise ProbeError(
                    ErrorKind.NOT_FOUND, f"{target.where} has no stream {config.topic!r}"
                ) from exc
            details["stream"] = {"name": config.topic, "messages": state.messages, "bytes": state.bytes}
        call.done("probe_ms")
        return details
    finally:
        # After a failed TLS upgrade nats-py's close() waits for ever on the plain transport
        # that start_tls took over; the socket is closed by then, so stop waiting.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.close(), 0.5)


async def _probe_amqp(call: _Call) -> dict[str, Any]:
    import aio_pika
    from aiormq.exceptions import ChannelNotFoundEntity

    target, config, tls = call.target, call.config, call.tls()
    vhost = config.virtual_host or target.path.removeprefix("/") or "/"
    connection = await aio_pika.connect(
        host=call.address,
        port=target.port,
        login=target.username or "guest",
        password=call.password or "guest",
        virtualhost=vhost,
        ssl=tls is not None,
        ssl_context=tls,
        timeout=call.bound,
        client_properties={"connection_name": _PROBE_NAME},
    )
    try:
        call.done("connect_ms")
        channel = await connection.channel()
        props = connection.transport.connection.server_properties if connection.transport else {}
        details: dict[str, Any] = {
            "server_version": _text(props.get("version")),
            "product": _text(props.get("product")),
            "platform": _text(props.get("platform")),
            "virtual_host": vhost,
        }
        name, entity = config.topic, config.amqp_entity
        try:
            if name is not None and entity == "queue":
                queue = await channel.declare_queue(name, passive=True, timeout=call.bound)
                counts = queue.declaration_result
                details["queue"] = {
                    "name": name,
                    "messages": counts.message_count,
                    "consumers": counts.consumer_count,
                }
            elif name is not None:
                await channel.declare_exchange(name, passive=True, timeout=call.bound)
                details["exchange"] = {"name": name}
        except ChannelNotFoundEntity as exc:
            raise ProbeError(
                ErrorKind.NOT_FOUND, f"{target.where} has no {entity} {name!r} in {vhost!r}"
            ) from exc
        call.done("probe_ms")
        return details
    finally:
        await connection.close()


async def _probe_mqtt(call: _Call) -> dict[str, Any]:
    import aiomqtt

    target, config, tls = call.target, call.config, call.tls()
    client = aiomqtt.Client(
        call.address,
        target.port,
        username=target.username,
        password=call.password,
        identifier=config.client_id or f"{_PROBE_NAME}-{secrets.token_hex(6)}",
        protocol=aiomqtt.ProtocolVersion.V5 if config.mqtt_version == "5" else aiomqtt.ProtocolVersion.V311,
        timeout=call.bound,
        tls_context=tls,
        tls_insecure=not config.tls_verify if tls else None,
    )
    # aiomqtt connects in a thread under paho's own 5 s connect timeout and has no setting for it.
    paho = client._client
    paho.connect_timeout = call.bound
    connected = False
    try:
        async with client:
            connected = True
            call.done("connect_ms")
            version = await _mqtt_broker_version(client, min(1.0, call.bound / 4))
            call.done("probe_ms")
    finally:
        if not connected:  # aiomqtt leaves paho's socket open after a failed or cancelled connect
            paho._sock_close()
            for sock in tls.wrapped if tls else ():
                sock.close()
    details: dict[str, Any] = {"server_version": version, "mqtt_version": config.mqtt_version}
    if config.topic is not None:
        details["topic_filter"] = config.topic
    return details


async def _mqtt_broker_version(client: Any, wait: float) -> str | None:
    """Mosquitto (and others) publish ``$SYS/broker/version`` retained; other brokers stay silent."""
    try:
        async with asyncio.timeout(wait):
            await client.subscribe("$SYS/broker/version")
            async for message in client.messages:
                return _text(message.payload)
    except TimeoutError:
        return None
    return None


async def _probe_redis(call: _Call) -> dict[str, Any]:
    from redis.asyncio import Redis
    from redis.asyncio.connection import Connection, ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ResponseError

    target, config, tls = call.target, call.config, call.tls()

    class TLSConnection(Connection):
        """A connection whose stream is wrapped with our pinned-name context."""

        def _connection_arguments(self) -> Mapping[str, Any]:
            return {**super()._connection_arguments(), "ssl": tls}

    path = target.path.strip("/") or "0"
    if config.database is None and not path.isdigit():
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's path must be a Redis database number")
    database = config.database if config.database is not None else int(path)
    pool = ConnectionPool(
        connection_class=TLSConnection if tls else Connection,
        host=call.address,
        port=target.port,
        db=database,
        username=target.username,
        password=call.password,
        socket_connect_timeout=call.bound,
        socket_timeout=call.bound,
        retry=Retry(NoBackoff(), 0),  # redis-py otherwise retries for ~2.6 s
        max_connections=1,
        decode_responses=True,
    )
    client = Redis(connection_pool=pool)
    try:
        await client.ping()
        call.done("connect_ms")
        details: dict[str, Any] = {"server_version": None, "database": database}
        try:
            info = await client.info("server")
            details.update(server_version=info.get("redis_version"), mode=info.get("redis_mode"))
        except ResponseError:  # INFO may be renamed, or denied by an ACL (NoPermissionError)
            pass
        if config.topic is not None:
            key_type = _text(await client.type(config.topic))
            if key_type == "none":
                raise ProbeError(ErrorKind.NOT_FOUND, f"{target.where} has no stream {config.topic!r}")
            if key_type != "stream":
                raise ProbeError(
                    ErrorKind.INVALID_CONFIG, f"{config.topic!r} holds a {key_type}, not a stream"
                )
            details["stream"] = {"name": config.topic, "length": await client.xlen(config.topic)}
        call.done("probe_ms")
        return details
    finally:
        await client.aclose()
        await pool.disconnect()


ProbeFn = Callable[[_Call], Awaitable[dict[str, Any]]]
Mapper = Callable[[BaseException, str], ProbeError | None]
_PROBES: dict[str, tuple[ProbeFn, Mapper]] = {
    "kafka": (_probe_kafka, map_kafka_error),
    "nats": (_probe_nats, map_nats_error),
    "amqp": (_probe_amqp, map_amqp_error),
    "mqtt": (_probe_mqtt, map_mqtt_error),
    "redis": (_probe_redis, map_redis_error),
}


class StreamType(ConnectorType):
    """Message streams: connect, authenticate, read server info and topic metadata."""

    name: ClassVar[str] = "stream"
    description: ClassVar[str] = "Message streams: Kafka, NATS, AMQP (RabbitMQ), MQTT, Redis streams."
    config_model: ClassVar[type[ConnectorConfig]] = StreamConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.READ, Capability.STREAM)

    def describe(self) -> dict[str, Any]:
        """The public description, with the protocols this type speaks."""
        return {**super().describe(), "protocols": list(get_args(Protocol))}

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Connect and authenticate, then read server info and the named topic, within ``ctx.timeout``."""
        config = ctx.config
        assert isinstance(config, StreamConfig)
        target = stream_target(ctx.endpoint, config)
        run, mapper = _PROBES[target.protocol]
        start = time.perf_counter()
        destination = (await ctx.egress.resolve(target.host, target.port))[0]
        # Drivers get a little less than the bound, so they fail on their own, cleanly,
        # before the bound (ours here, the facade's around us) cancels them.
        left = ctx.timeout - (time.perf_counter() - start)
        call = _Call(target, destination.address, config, max(left - min(0.25, left / 20), 0.05), _mark=start)
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
