"""The ``stream`` type's MQTT probe (aiomqtt over paho-mqtt) and its error mapping.

``map_mqtt_error`` is public through ``connectord.types.stream``; import it from there.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.types._stream_common import PROBE_NAME, Call, ErrorTable, as_text, map_driver_error

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
    return map_driver_error(exc, where, table, (m.MqttError,), ("aiomqtt", "paho"))


async def probe_mqtt(call: Call) -> dict[str, Any]:
    """Connect to the checked broker (CONNACK) and read its ``$SYS`` version, if it publishes one."""
    import aiomqtt

    target, config, tls = call.target, call.config, call.tls()
    client = aiomqtt.Client(
        call.address,
        target.port,
        username=target.username,
        password=call.password,
        identifier=config.client_id or f"{PROBE_NAME}-{secrets.token_hex(6)}",
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
                return as_text(message.payload)
    except TimeoutError:
        return None
    return None
