"""Pieces the ``stream`` type's protocol modules share: the shape of every error
mapping, and one probe run with its phase timings (the name-pinning TLS context is
:mod:`connectord.network.tls`'s, shared with the sql probe).

Private to ``connectord.types.stream`` and its ``_stream_*`` modules; it imports
none of them at run time.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from connectord.model import ErrorKind
from connectord.network.tls import PinnedNameContext, pinned_tls_context
from connectord.plugin import ProbeError

if TYPE_CHECKING:
    # For annotations only: stream.py imports this module, so nothing from it is imported at run time.
    from connectord.types.stream import StreamConfig, StreamTarget

#: The name a probe gives itself to the broker (client id, connection name).
PROBE_NAME = "connectord-probe"


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
#: A mapping's table: driver exception classes -> the error kind they mean, first match wins.
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


def map_driver_error(
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


@dataclass(slots=True)
class Call:
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
        return secret_value(self.config.password)

    def tls(self) -> PinnedNameContext | None:
        """The TLS context, if TLS is on."""
        if not self.target.tls:
            return None
        return pinned_tls_context(self.target.host, self.config.tls_verify, self.config.ca_pem)


def exc_text(exc: BaseException) -> str:
    """``str(exc)``, or ``""`` when the driver's ``__str__`` itself fails."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - some drivers' __str__ needs fields a bare instance lacks
        return ""


def secret_value(value: SecretStr | None) -> str | None:
    """A secret's value, for the driver."""
    return value.get_secret_value() if value is not None else None


def as_text(value: object) -> str | None:
    """A server-reported value as text (bytes decoded), ``None`` kept."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if value is not None else None
