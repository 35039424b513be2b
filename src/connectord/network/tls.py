"""TLS for every probe: client contexts, the pinned-name context, CA PEM fields, TLS errors.

Probes connect to a checked address, never to the name again, so drivers that
take one host argument get a :class:`PinnedNameContext` that puts the
connector's host name back into SNI and the certificate check.
"""

from __future__ import annotations

import functools
import socket
import ssl
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator

from connectord.errors import ProbeError
from connectord.model import ErrorKind


@functools.lru_cache(maxsize=32)
def tls_context(verify: bool, ca_pem: str | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client TLS context honouring the connector's verification settings.

    Cached, because building one loads the CA store (tens of milliseconds, more
    than a test): callers share the object and must not change it.
    """
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class PinnedNameContext(ssl.SSLContext):
    """A client TLS context that verifies ``pinned_name`` whatever name the driver passes.

    Drivers take one host argument and use it both to connect and as the TLS
    name; we hand them the checked address, so the context puts the connector's
    host name back into the handshake (SNI and the certificate check). The one
    such context of every probe (SQL, streams).
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
    if not verify:
        # Nothing is verified: the CA store (tens of milliseconds to load) is not read.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem)
        else:
            ctx.load_default_certs()
    except (ssl.SSLError, ValueError) as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "ca_pem holds no valid PEM certificate") from exc
    return ctx


def tls_error(exc: BaseException) -> ProbeError | None:
    """A TLS failure as a ``tls`` :class:`ProbeError` (the one mapping of every probe); else ``None``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeError(ErrorKind.TLS, f"TLS certificate verification failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return ProbeError(ErrorKind.TLS, f"TLS handshake failed: {getattr(exc, 'reason', None) or 'error'}")
    return None


def check_pem(value: str | None) -> str | None:
    """A ``ca_pem`` field validator body: CA certificates as PEM text that parses.

    Never a file path (the server does not read its own files for a tenant), and
    never a private key (the field is not secret, so it is stored in clear).
    """
    if value is None:
        return None
    if "PRIVATE KEY" in value:
        raise ValueError("holds a private key; give only CA certificates")
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----), not a file path")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError("holds a certificate that does not parse") from exc
    return value


#: The type of a ``ca_pem`` config field, checked by :func:`check_pem`.
CaPem = Annotated[str | None, AfterValidator(check_pem)]


def certificate_details(sslobj: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
    """TLS version, cipher and the peer certificate's expiry (read even when not verified)."""
    if sslobj is None:
        return {}
    details: dict[str, Any] = {"tls_version": sslobj.version()}
    cipher = sslobj.cipher()
    if cipher:
        details["tls_cipher"] = cipher[0]
    der = sslobj.getpeercert(binary_form=True)
    if der:
        from cryptography import x509

        expires = x509.load_der_x509_certificate(der).not_valid_after_utc
        details["certificate_expires_at"] = expires.isoformat()
        details["certificate_days_left"] = (expires - datetime.now(UTC)).days
    return details
