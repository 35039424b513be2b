"""The ``stream`` type's NATS probe (nats-py, JetStream) and its error mapping.

``map_nats_error`` is public through ``connectord.types.stream``; import it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from typing import Any

from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.types._stream_common import (
    PROBE_NAME,
    Call,
    ErrorTable,
    exc_text,
    map_driver_error,
    secret_value,
)


def map_nats_error(exc: BaseException, where: str) -> ProbeError | None:
    """A nats-py failure as a probe error; ``None`` if it is neither a driver nor a network failure."""
    from nats import errors as n
    from nats.js import errors as js

    # nats-py raises its plain Error carrying the server's -ERR text for most refusals.
    if isinstance(exc, n.Error) and re.search(
        r"authori[sz]ation|authentication|permission", exc_text(exc), re.I
    ):
        return ProbeError(ErrorKind.AUTH, f"{where} refused the credentials")
    table: ErrorTable = (
        ((n.AuthorizationError, n.InvalidUserCredentialsError), ErrorKind.AUTH),
        ((js.NotFoundError,), ErrorKind.NOT_FOUND),
        ((n.TimeoutError,), ErrorKind.TIMEOUT),
        ((n.SecureConnRequiredError, n.SecureConnWantedError, n.SecureConnFailedError), ErrorKind.TLS),
        ((js.ServiceUnavailableError, n.NoRespondersError), ErrorKind.UNAVAILABLE),
    )
    wrappers = (n.NoServersError, n.ConnectionClosedError, n.StaleConnectionError)
    return map_driver_error(exc, where, table, wrappers, ("nats",))


async def probe_nats(call: Call) -> dict[str, Any]:
    """Connect to the checked server, read its INFO and, when a topic is set, its JetStream stream."""
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
                name=PROBE_NAME,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=call.bound,  # type: ignore[arg-type]  # annotated int, used as a float
                error_cb=on_error,
                tls=call.tls(),
                tls_hostname=target.host if target.tls else None,
                user=target.username,
                password=call.password,
                token=secret_value(config.token),
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
