"""The ``stream`` type's AMQP 0-9-1 probe (aio-pika, RabbitMQ) and its error mapping.

``map_amqp_error`` is public through ``connectord.types.stream``; import it from there.
"""

from __future__ import annotations

from typing import Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.types._stream_common import (
    PROBE_NAME,
    Call,
    ErrorTable,
    as_text,
    exc_text,
    map_driver_error,
)


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
    if isinstance(exc, a.InvalidFrameError) and "got <Connection.Close" in exc_text(exc):
        return ProbeError(ErrorKind.AUTH, f"{where} refused the virtual host (missing, or not allowed)")
    return map_driver_error(
        exc, where, table, (a.AMQPConnectionError, a.ChannelClosed), ("aiormq", "aio_pika", "pamqp")
    )


async def probe_amqp(call: Call) -> dict[str, Any]:
    """Connect to the checked broker and virtual host and passively declare the named queue or exchange."""
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
        client_properties={"connection_name": PROBE_NAME},
    )
    try:
        call.done("connect_ms")
        channel = await connection.channel()
        props = connection.transport.connection.server_properties if connection.transport else {}
        details: dict[str, Any] = {
            "server_version": as_text(props.get("version")),
            "product": as_text(props.get("product")),
            "platform": as_text(props.get("platform")),
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
