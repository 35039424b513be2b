"""The stream probe against real servers: Kafka (Tansu), NATS, RabbitMQ, Mosquitto, Redis.

One suite runs on every protocol (a ``Case`` per protocol): success with
details, the named topic found and missing, wrong credentials, a closed port
and a black-holed one, directly and through the facade. TLS, NATS tokens, AMQP
exchanges and virtual hosts, the config rules and the error mappings have their
own tests. The servers: ``tests/types/peers_stream.py``.

Kafka credentials: Tansu speaks SASL SCRAM only with ``--authentication``, and
then refuses every client until a user exists; users are created through an
authenticated connection and the in-memory engine forgets them on restart. So
a *successful* SASL login cannot be tested here; wrong credentials (Tansu's
``e=unknown-user``) are.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import pytest
import trustme

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind, TestResult
from connectord.network import EgressPolicy, Network
from connectord.network.tls import pinned_tls_context
from connectord.plugin import ProbeContext, ProbeError, ProbeOutcome
from connectord.settings import Settings
from connectord.types.registry import TypeRegistry
from connectord.types.stream import (
    StreamConfig,
    StreamType,
    _kafka_log_filter,
    map_amqp_error,
    map_kafka_error,
    map_mqtt_error,
    map_nats_error,
    map_redis_error,
    stream_target,
)

if TYPE_CHECKING:
    from tests.types.peers_stream import Peer

pytest_plugins = ("tests.types.peers_stream",)  # the servers, as session fixtures

LOOPBACK = ["127.0.0.0/8", "::1/128"]
WRONG = f"wrong-{secrets.token_hex(8)}"
PROTOCOLS = ["kafka", "nats", "amqp", "mqtt", "redis"]
LOOKUPS = ["kafka", "nats", "amqp", "redis"]  # MQTT topic filters are validated, never looked up


@dataclass(frozen=True)
class Case:
    """One protocol's server, a topic on it and credentials that it refuses."""

    protocol: str
    endpoint: str
    config: dict[str, Any]
    topic: str
    topic_details: dict[str, Any]
    bad_endpoint: str
    bad_config: dict[str, Any]
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        """Every secret value of this case (right and wrong)."""
        values = [*self.config.values(), *self.bad_config.values()]
        return [v for v in values if isinstance(v, str) and v.startswith(("np-", "mp-", "rp-", "wrong-"))]


def _kafka(request: pytest.FixtureRequest) -> Case:
    plain: Peer = request.getfixturevalue("tansu")
    auth: Peer = request.getfixturevalue("tansu_auth")
    topic = plain.values["topic"]
    return Case(
        "kafka",
        f"kafka://127.0.0.1:{plain.port}",
        {},
        topic,
        {"topic": {"name": topic, "partitions": int(plain.values["partitions"])}},
        f"kafka://probe@127.0.0.1:{auth.port}",
        {"password": WRONG, "sasl_mechanism": "SCRAM-SHA-256"},
        {"broker_count": 1, "server_version": None, "cluster_id": "tansu_cluster"},
    )


def _nats(request: pytest.FixtureRequest) -> Case:
    peer: Peer = request.getfixturevalue("nats_auth")
    endpoint = f"nats://{peer.values['user']}@127.0.0.1:{peer.port}"
    stream = peer.values["stream"]
    return Case(
        "nats",
        endpoint,
        {"password": peer.values["password"]},
        stream,
        {"stream": {"name": stream, "messages": 1}},
        endpoint,
        {"password": WRONG},
        {"jetstream": True},
    )


def _amqp(request: pytest.FixtureRequest) -> Case:
    queue: str = request.getfixturevalue("rabbit_queue")
    endpoint = "amqp://guest@127.0.0.1:5672/"
    return Case(
        "amqp",
        endpoint,
        {"password": "guest"},
        queue,
        {"queue": {"name": queue, "messages": 1, "consumers": 0}},
        endpoint,
        {"password": WRONG},
        {"product": "RabbitMQ", "virtual_host": "/"},
    )


def _mqtt(request: pytest.FixtureRequest) -> Case:
    peer: Peer = request.getfixturevalue("mosquitto_auth")
    endpoint = f"mqtt://{peer.values['user']}@127.0.0.1:{peer.port}"
    return Case(
        "mqtt",
        endpoint,
        {"password": peer.values["password"]},
        "sensors/+/temp/#",
        {"topic_filter": "sensors/+/temp/#"},
        endpoint,
        {"password": WRONG},
        {"mqtt_version": "3.1.1"},
    )


def _redis(request: pytest.FixtureRequest) -> Case:
    peer: Peer = request.getfixturevalue("redis_auth")
    endpoint = f"redis://127.0.0.1:{peer.port}"
    return Case(
        "redis",
        endpoint,
        {"password": peer.values["password"]},
        "events",
        {"stream": {"name": "events", "length": 3}},
        endpoint,
        {"password": WRONG},
        {"mode": "standalone", "database": 0},
    )


CASES: dict[str, Callable[[pytest.FixtureRequest], Case]] = {
    "kafka": _kafka,
    "nats": _nats,
    "amqp": _amqp,
    "mqtt": _mqtt,
    "redis": _redis,
}


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """The case of the protocol the test is parametrized with (its servers start on first use)."""
    return CASES[request.param](request)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # drivers' debug records too: a secret must not be in any


async def probe(
    endpoint: str, bound: float = 5.0, allow: list[str] | None = None, **config: Any
) -> ProbeOutcome:
    """Run the stream probe directly, with loopback opened."""
    ctx = ProbeContext(
        endpoint, StreamConfig(**config), bound, Network(EgressPolicy(LOOPBACK if allow is None else allow))
    )
    return await StreamType().probe(ctx)


async def failure(endpoint: str, bound: float = 5.0, **config: Any) -> ProbeError:
    """The probe error of a probe that must fail."""
    with pytest.raises(ProbeError) as info:
        await probe(endpoint, bound, **config)
    return info.value


def assert_no_leak(caplog: pytest.LogCaptureFixture, found: object, values: list[str]) -> None:
    """No secret value in the result or error, nor in any log record."""
    text = json.dumps(found.to_dict()) if isinstance(found, TestResult) else repr(found)
    if isinstance(found, ProbeError):
        text += found.message + json.dumps(found.details)
    for value in values:
        assert value not in text
        assert value not in caplog.text


def assert_phases(details: dict[str, Any]) -> None:
    """Resolve, connect and probe timings, in milliseconds."""
    assert set(details["phases"]) == {"resolve_ms", "connect_ms", "probe_ms"}
    assert all(isinstance(v, float) and v >= 0 for v in details["phases"].values())


# --- the suite, on every protocol ----------------------------------------------------


@pytest.mark.parametrize("case", PROTOCOLS, indirect=True)
async def test_success_reports_server_details(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    outcome = await probe(case.endpoint, **case.config)
    details = outcome.details
    assert details["protocol"] == case.protocol
    assert details["address"] == "127.0.0.1"
    assert details["tls"] is False
    assert details.items() >= case.expect.items()
    if case.protocol != "kafka":  # Kafka's protocol does not carry a version
        assert isinstance(details["server_version"], str)
        assert details["server_version"][:1].isalnum()
    assert_phases(details)
    assert_no_leak(caplog, outcome.details, case.secrets)


@pytest.mark.parametrize("case", PROTOCOLS, indirect=True)
async def test_named_topic_is_described(case: Case) -> None:
    outcome = await probe(case.endpoint, topic=case.topic, **case.config)
    for key, value in case.topic_details.items():
        got = outcome.details[key]
        assert got == value if not isinstance(value, dict) else got.items() >= value.items()


@pytest.mark.parametrize("case", LOOKUPS, indirect=True)
async def test_missing_topic_is_not_found(case: Case) -> None:
    error = await failure(case.endpoint, topic="nosuch-topic", **case.config)
    assert error.kind == ErrorKind.NOT_FOUND
    assert "nosuch-topic" in error.message


@pytest.mark.parametrize("case", PROTOCOLS, indirect=True)
async def test_wrong_credentials_are_auth(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    error = await failure(case.bad_endpoint, **case.bad_config)
    assert error.kind == ErrorKind.AUTH, error.message
    assert_no_leak(caplog, error, case.secrets)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_closed_port_is_refused_quickly(protocol: str, stream_closed_port: int) -> None:
    start = time.monotonic()
    error = await failure(f"{protocol}://127.0.0.1:{stream_closed_port}")
    assert error.kind == ErrorKind.REFUSED, error.message
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_black_hole_times_out_within_bound(protocol: str, stream_black_hole: int) -> None:
    start = time.monotonic()
    error = await failure(f"{protocol}://127.0.0.1:{stream_black_hole}", bound=1.0)
    assert error.kind == ErrorKind.TIMEOUT, error.message
    assert "within 1 s" in error.message
    assert time.monotonic() - start < 1.0 + 2


# --- through the facade --------------------------------------------------------------


@pytest.fixture
async def facade(tmp_path: Path) -> AsyncIterator[ConnectorsFacade]:
    """A facade on SQLite in a temporary folder, with loopback opened."""
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path, egress_allow=LOOPBACK)) as f:
        yield f


@pytest.fixture
async def tenant(facade: ConnectorsFacade) -> str:
    """A fresh tenant."""
    record, _ = await Admin(facade).create_tenant(f"stream-{secrets.token_hex(4)}")
    return record.id


@pytest.mark.parametrize("case", PROTOCOLS, indirect=True)
async def test_facade_tests_each_protocol(
    case: Case, facade: ConnectorsFacade, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    info = await facade.register_connector(tenant, "events", "stream", case.endpoint, case.config)
    assert info.capabilities == ["read", "stream"]
    assert info.secret_fields == (["password"] if "password" in case.config else [])
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["protocol"] == case.protocol
    bad = await facade.test_definition(tenant, "bad", "stream", case.bad_endpoint, case.bad_config)
    assert not bad.success
    assert bad.error_kind == "auth"
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.status == "connected"
    for found in (result, bad, info, stored):
        assert_no_leak(caplog, found if isinstance(found, TestResult) else found.to_dict(), case.secrets)


async def test_facade_moves_a_url_password_into_the_secret(
    redis_auth: Peer, facade: ConnectorsFacade, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = redis_auth.values["password"]
    endpoint = f"redis://:{password}@127.0.0.1:{redis_auth.port}/0"
    info = await facade.register_connector(tenant, "cache", "stream", endpoint, {"topic": "events"})
    assert password not in (info.endpoint or "")
    assert info.secret_fields == ["password"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["stream"] == {"name": "events", "length": 3}
    assert_no_leak(caplog, result, [password])
    assert password not in json.dumps(info.to_dict())


async def test_facade_black_hole_times_out(
    stream_black_hole: int, facade: ConnectorsFacade, tenant: str
) -> None:
    info = await facade.register_connector(
        tenant, "hole", "stream", f"amqp://127.0.0.1:{stream_black_hole}", {"timeout": 1}
    )
    start = time.monotonic()
    result = await facade.test_connector(info.id, tenant)
    assert result.error_kind == "timeout"
    assert time.monotonic() - start < 1 + 2


async def test_facade_refuses_a_field_of_another_protocol(facade: ConnectorsFacade, tenant: str) -> None:
    from connectord.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        await facade.register_connector(
            tenant, "k", "stream", "kafka://h:9092", {"protocol": "kafka", "token": "t"}
        )
    assert "token applies to nats only" in str(info.value.errors)


# --- TLS: the driver connects to the checked address, the handshake checks the name ----


@pytest.mark.parametrize("protocol", ["redis", "mqtt", "nats"])
async def test_tls_verifies_the_host_name_not_the_address(
    protocol: str, stream_ca: trustme.CA, request: pytest.FixtureRequest
) -> None:
    """The certificate names ``localhost`` only: by name the handshake passes, by address it
    fails. Redis and NATS use asyncio's TLS (``wrap_bio``), MQTT paho's sockets (``wrap_socket``);
    NATS upgrades after INFO."""
    peer: Peer = request.getfixturevalue(
        {"redis": "redis_auth", "mqtt": "mosquitto_auth"}.get(protocol, "nats_tls")
    )
    user = f"{peer.values['user']}@" if "user" in peer.values else ""
    scheme = "nats" if protocol == "nats" else f"{protocol}s"
    secret = {"token": peer.values["token"]} if protocol == "nats" else {"password": peer.values["password"]}
    config = {**secret, "ca_pem": stream_ca.cert_pem.bytes().decode(), "tls": True}
    ok = await probe(f"{scheme}://{user}localhost:{peer.ports['tls']}", **config)
    assert ok.details["tls"] is True
    assert ok.details["address"] == "127.0.0.1"
    by_address = await failure(f"{scheme}://{user}127.0.0.1:{peer.ports['tls']}", **config)
    assert by_address.kind == ErrorKind.TLS
    unknown_ca = await failure(f"{scheme}://{user}localhost:{peer.ports['tls']}", tls=True, **secret)
    assert unknown_ca.kind == ErrorKind.TLS
    unverified = await probe(f"{scheme}://{user}127.0.0.1:{peer.ports['tls']}", tls_verify=False, **config)
    assert unverified.details["tls"] is True


async def test_tls_never_falls_back_to_plain_text(nats_token: Peer) -> None:
    """nats-py alone would send the token in clear to a server that offers no TLS."""
    nats = await failure(f"nats://127.0.0.1:{nats_token.port}", tls=True, token=nats_token.values["token"])
    assert nats.kind == ErrorKind.TLS
    amqp = await failure("amqps://guest@127.0.0.1:5672/", password="guest", tls_verify=False)
    assert amqp.kind == ErrorKind.TLS


def test_ca_pem_must_be_pem_text() -> None:
    with pytest.raises(pydantic.ValidationError):
        StreamConfig(ca_pem="/etc/ssl/certs/ca.pem")
    with pytest.raises(ProbeError) as info:
        pinned_tls_context("h", True, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----")
    assert info.value.kind == ErrorKind.INVALID_CONFIG


# --- protocol specifics --------------------------------------------------------------


async def test_nats_token(nats_token: Peer, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"nats://127.0.0.1:{nats_token.port}"
    ok = await probe(endpoint, token=nats_token.values["token"])
    assert ok.details["jetstream"] is False
    assert (await failure(endpoint, token=WRONG)).kind == ErrorKind.AUTH
    assert (await failure(endpoint)).kind == ErrorKind.AUTH
    assert_no_leak(caplog, ok.details, [nats_token.values["token"], WRONG])


async def test_nats_stream_needs_jetstream(nats_token: Peer) -> None:
    error = await failure(f"nats://127.0.0.1:{nats_token.port}", token=nats_token.values["token"], topic="S")
    assert error.kind == ErrorKind.NOT_FOUND
    assert "JetStream" in error.message


async def test_nats_running_server_reports_jetstream() -> None:
    outcome = await probe("nats://127.0.0.1:4222")
    assert outcome.details["jetstream"] is True
    assert isinstance(outcome.details["server_id"], str)


async def test_amqp_exchange_found_and_missing() -> None:
    config = {"password": "guest", "amqp_entity": "exchange"}
    ok = await probe("amqp://guest@127.0.0.1:5672/", topic="amq.topic", **config)
    assert ok.details["exchange"] == {"name": "amq.topic"}
    missing = await failure("amqp://guest@127.0.0.1:5672/", topic="connectord-no-exchange", **config)
    assert missing.kind == ErrorKind.NOT_FOUND


async def test_amqp_unknown_virtual_host_is_refused() -> None:
    error = await failure("amqp://guest@127.0.0.1:5672/connectord-no-vhost", password="guest")
    assert error.kind == ErrorKind.AUTH
    assert "virtual host" in error.message


async def test_redis_key_of_another_type_is_invalid(redis_auth: Peer) -> None:
    endpoint = f"redis://127.0.0.1:{redis_auth.port}/0"
    error = await failure(endpoint, password=redis_auth.values["password"], topic="jobs")
    assert error.kind == ErrorKind.INVALID_CONFIG
    assert "list" in error.message


async def test_redis_without_password_and_other_database(redis_auth: Peer) -> None:
    ok = await probe("redis://127.0.0.1:6379/3")
    assert ok.details["database"] == 3
    assert (await failure(f"redis://127.0.0.1:{redis_auth.port}")).kind == ErrorKind.AUTH


async def test_redis_path_must_be_a_database_number() -> None:
    error = await failure("redis://127.0.0.1:6379/not-a-number")
    assert error.kind == ErrorKind.INVALID_CONFIG


async def test_mqtt_version_5_and_anonymous_broker() -> None:
    outcome = await probe("mqtt://127.0.0.1:1883", mqtt_version="5")
    assert outcome.details["mqtt_version"] == "5"
    assert "mosquitto" in outcome.details["server_version"]


async def test_kafka_without_sasl_on_an_authenticating_broker(tansu_auth: Peer) -> None:
    error = await failure(f"kafka://127.0.0.1:{tansu_auth.port}")
    assert error.kind == ErrorKind.UNAVAILABLE
    assert "SASL" in error.message or "closed the connection" in error.message


async def test_egress_policy_applies_before_connecting() -> None:
    error = await failure("redis://127.0.0.1:6379", allow=[])
    assert error.kind == ErrorKind.EGRESS_DENIED


# --- config and schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "config", "expected"),
    [
        ("rediss://cache.example:7000/2", {}, ("redis", "cache.example", 7000, True)),
        ("amqps://mq.example", {}, ("amqp", "mq.example", 5671, True)),
        ("mqtt://broker.example", {}, ("mqtt", "broker.example", 1883, False)),
        ("broker.example:4000", {"protocol": "nats"}, ("nats", "broker.example", 4000, False)),
        ("kafka://b.example", {"tls": True}, ("kafka", "b.example", 9093, True)),
    ],
)
def test_protocol_and_port_come_from_the_scheme(
    endpoint: str, config: dict[str, Any], expected: tuple[str, str, int, bool]
) -> None:
    target = stream_target(endpoint, StreamConfig(**config))
    assert (target.protocol, target.host, target.port, target.tls) == expected


@pytest.mark.parametrize(
    ("endpoint", "config"),
    [
        (None, {}),
        ("broker.example:4000", {}),
        ("http://broker.example", {}),
        ("kafka://broker.example", {"protocol": "redis"}),
        ("kafka://broker.example", {"token": "t"}),
        ("kafka://broker.example", {"topic": "no spaces allowed"}),
        ("nats://broker.example", {"topic": "a.b"}),
        ("mqtt://broker.example", {"topic": "a/#/b"}),
        ("mqtt://broker.example", {"topic": "a/b+"}),
    ],
)
def test_bad_targets_are_invalid_config(endpoint: str | None, config: dict[str, Any]) -> None:
    with pytest.raises(ProbeError) as info:
        stream_target(endpoint, StreamConfig(**config))
    assert info.value.kind == ErrorKind.INVALID_CONFIG


def test_explicit_protocol_is_checked_by_the_schema() -> None:
    with pytest.raises(pydantic.ValidationError, match="sasl_mechanism applies to kafka only"):
        StreamConfig(protocol="redis", sasl_mechanism="PLAIN")
    with pytest.raises(pydantic.ValidationError):
        StreamConfig(protocol="kafka", topic="bad topic")
    with pytest.raises(pydantic.ValidationError):
        StreamConfig(jaas_config="org.apache.kafka...")  # type: ignore[call-arg]
    assert StreamConfig(protocol="mqtt", topic="+/sensors/#").topic == "+/sensors/#"


def test_registry_describes_the_type() -> None:
    described = TypeRegistry().get("stream").describe()
    assert described["protocols"] == ["kafka", "nats", "amqp", "mqtt", "redis"]
    assert described["capabilities"] == ["read", "stream"]
    props = described["config_schema"]["properties"]
    secret = {name for name, p in props.items() if any(a.get("writeOnly") for a in p.get("anyOf", [p]))}
    assert secret == {"password", "token"}
    assert all("description" in p for p in props.values())


# --- error mappings: every driver exception maps to a kind -----------------------------

MAPPERS: list[tuple[str, Callable[[BaseException, str], ProbeError | None], list[str]]] = [
    ("kafka", map_kafka_error, ["aiokafka.errors"]),
    ("nats", map_nats_error, ["nats.errors", "nats.js.errors"]),
    ("amqp", map_amqp_error, ["aiormq.exceptions", "aio_pika.exceptions", "pamqp.exceptions"]),
    ("mqtt", map_mqtt_error, ["aiomqtt.exceptions"]),
    ("redis", map_redis_error, ["redis.exceptions"]),
]


def _exception_classes(modules: list[str]) -> list[type[BaseException]]:
    found: dict[type[BaseException], None] = {}
    for name in modules:
        for _, obj in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.split(".")[0] == name.split(".")[0]:
                found[obj] = None
    return list(found)


def _instance(cls: type[BaseException]) -> BaseException:
    for args in ((), ("x",), (None,)):
        try:
            return cls(*args)
        except Exception:  # the next way to build it, then
            continue
    exc = cls.__new__(cls)
    BaseException.__init__(exc, "x")
    return exc


@pytest.mark.parametrize(("protocol", "mapper", "modules"), MAPPERS, ids=[m[0] for m in MAPPERS])
def test_every_driver_exception_maps_to_a_kind(
    protocol: str, mapper: Callable[[BaseException, str], ProbeError | None], modules: list[str]
) -> None:
    classes = _exception_classes(modules)
    assert len(classes) >= 4
    for cls in classes:
        mapped = mapper(_instance(cls), "h:1")
        assert mapped is not None, cls
        assert mapped.kind in set(ErrorKind)
        assert "h:1" in mapped.message or mapped.kind == ErrorKind.INTERNAL
    assert mapper(KeyError("not a driver error"), "h:1") is None


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def _expectations() -> list[
    tuple[Callable[[BaseException, str], ProbeError | None], BaseException, ErrorKind]
]:
    from aiokafka import errors as k
    from aiomqtt.exceptions import MqttConnectError, MqttError
    from aiormq import exceptions as a
    from nats import errors as n
    from nats.js import errors as js
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode
    from redis import exceptions as r

    refused = ConnectionRefusedError(111, "refused")
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    return [
        (map_kafka_error, k.SaslAuthenticationFailed(), ErrorKind.AUTH),
        (map_kafka_error, k.UnknownTopicOrPartitionError(), ErrorKind.NOT_FOUND),
        (map_kafka_error, k.KafkaTimeoutError(), ErrorKind.TIMEOUT),
        (map_kafka_error, k.KafkaConnectionError("closed"), ErrorKind.UNAVAILABLE),
        (map_kafka_error, _caused(k.KafkaConnectionError("x"), refused), ErrorKind.REFUSED),
        (map_kafka_error, k.UnsupportedVersionError(), ErrorKind.PROTOCOL),
        (map_nats_error, n.Error("nats: 'Authorization Violation'"), ErrorKind.AUTH),
        (map_nats_error, n.AuthorizationError(), ErrorKind.AUTH),
        (map_nats_error, js.NotFoundError(), ErrorKind.NOT_FOUND),
        (map_nats_error, n.TimeoutError(), ErrorKind.TIMEOUT),
        (map_nats_error, n.SecureConnRequiredError(), ErrorKind.TLS),
        (map_nats_error, _caused(n.Error("x"), bad_cert), ErrorKind.TLS),
        (map_amqp_error, a.ProbableAuthenticationError("ACCESS_REFUSED"), ErrorKind.AUTH),
        (map_amqp_error, a.ChannelNotFoundEntity("NOT_FOUND"), ErrorKind.NOT_FOUND),
        (map_amqp_error, _caused(a.AMQPConnectionError(111), refused), ErrorKind.REFUSED),
        (map_amqp_error, a.IncompatibleProtocolError(), ErrorKind.PROTOCOL),
        (map_mqtt_error, MqttConnectError(5), ErrorKind.AUTH),
        (map_mqtt_error, MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=134)), ErrorKind.AUTH),
        (map_mqtt_error, MqttConnectError(3), ErrorKind.UNAVAILABLE),
        (map_mqtt_error, _caused(MqttError("Operation timed out"), TimeoutError()), ErrorKind.TIMEOUT),
        (map_redis_error, r.AuthenticationError(), ErrorKind.AUTH),
        (map_redis_error, r.TimeoutError(), ErrorKind.TIMEOUT),
        (map_redis_error, _caused(r.ConnectionError("x"), refused), ErrorKind.REFUSED),
        (map_redis_error, r.BusyLoadingError(), ErrorKind.UNAVAILABLE),
        (map_redis_error, r.ResponseError("WRONGTYPE"), ErrorKind.PROTOCOL),
    ]


def test_driver_exceptions_map_to_the_expected_kind() -> None:
    for mapper, exc, kind in _expectations():
        mapped = mapper(exc, "h:1")
        assert mapped is not None, type(exc)
        assert mapped.kind == kind, (type(exc), mapped.kind)


def test_kafka_sasl_requests_never_reach_the_logs() -> None:
    """aiokafka logs each request at DEBUG; a SASL PLAIN request holds the password."""
    from aiokafka.protocol.admin import SaslAuthenticateRequest
    from aiokafka.protocol.metadata import MetadataRequest

    struct = SaslAuthenticateRequest(f"\x00user\x00{WRONG}".encode()).prepare({36: (0, 1)})
    record = logging.LogRecord("aiokafka.conn", logging.DEBUG, __file__, 1, "Request %s", (struct,), None)
    assert _kafka_log_filter.filter(record) is False
    harmless = MetadataRequest(None, False).prepare({3: (0, 5)})
    record = logging.LogRecord("aiokafka.conn", logging.DEBUG, __file__, 1, "Request %s", (harmless,), None)
    assert _kafka_log_filter.filter(record) is True
