"""The ``smtp`` type: reach a mail server, read its greeting, EHLO, optionally
STARTTLS and authenticate, then QUIT. It never sends mail.

Everything a plugin must do is here: a config model (``SecretStr`` for the
secrets), a probe that resolves through ``ctx.network`` and connects to the
checked address only, one function that maps failures to ``ErrorKind``, the
time of each phase, and no secret in any error.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from connectord.model import Capability, ErrorKind
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome

#: Default ports: 25 for relays, 465 for implicit TLS (``smtps://``).
PORTS = {"smtp": 25, "smtps": 465}
MAX_REPLY_LINES = 100
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class SmtpConfig(ConnectorConfig):
    """Config of an ``smtp`` connector; the password is the base ``password`` field."""

    username: str | None = Field(
        default=None, description="User for SMTP AUTH (PLAIN or LOGIN); none: no AUTH."
    )
    starttls: bool = Field(
        default=False, description="Upgrade with STARTTLS after EHLO; fails if the server does not offer it."
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and host name.")
    ca_pem: str | None = Field(default=None, description="Extra CA certificates to trust, as PEM text.")
    ehlo_name: str = Field(default="connectord.invalid", description="The name this client gives in EHLO.")
    allow_plaintext_auth: bool = Field(
        default=False, description="Allow AUTH without TLS (sends the password in clear; avoid)."
    )

    @field_validator("ehlo_name")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOSTNAME.match(value):
            raise ValueError("must be a host name")
        return value

    @field_validator("ca_pem")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text, not a file path")
        return value


class SmtpType(ConnectorType):
    """SMTP servers: greeting, EHLO, optional STARTTLS and AUTH."""

    name: ClassVar[str] = "smtp"
    description: ClassVar[str] = "SMTP servers: greeting, EHLO, STARTTLS and AUTH (example plugin)."
    config_model: ClassVar[type[ConnectorConfig]] = SmtpConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.WRITE,)

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Connect, read the greeting, EHLO, optionally STARTTLS and AUTH, QUIT; within ``ctx.timeout``."""
        config = ctx.config
        assert isinstance(config, SmtpConfig)
        host, port, implicit_tls = _target(ctx.endpoint)
        if config.username and not (implicit_tls or config.starttls or config.allow_plaintext_auth):
            raise ProbeError(ErrorKind.INVALID_CONFIG, "AUTH needs TLS: use smtps:// or starttls")
        session = _Session(host, port, config)
        try:
            async with asyncio.timeout(ctx.timeout):
                details = await session.run(ctx, implicit_tls)
        except ProbeError:
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError) as exc:  # TimeoutError is an OSError
            raise map_smtp_error(exc, f"{host}:{port}", ctx.timeout) from exc
        finally:
            session.close()
        return ProbeOutcome(details=details)


def _target(endpoint: str | None) -> tuple[str, int, bool]:
    if not endpoint:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is required (smtp://host:port)")
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"smtp://{endpoint}")
        port = parts.port
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's port is not a number") from exc
    if parts.scheme not in PORTS or not parts.hostname:
        raise ProbeError(
            ErrorKind.INVALID_CONFIG, "the endpoint is smtp://host[:port] or smtps://host[:port]"
        )
    return parts.hostname, port or PORTS[parts.scheme], parts.scheme == "smtps"


def map_smtp_error(exc: BaseException, where: str, timeout: float) -> ProbeError:
    """A socket-level failure as a probe error (SMTP replies are mapped where they are read)."""
    if isinstance(exc, ssl.SSLError):
        return ProbeError(ErrorKind.TLS, f"TLS with {where} failed: {getattr(exc, 'reason', None) or exc}")
    if isinstance(exc, TimeoutError):
        return ProbeError(ErrorKind.TIMEOUT, f"no answer from {where} within {timeout:g} s")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError(ErrorKind.REFUSED, f"connection refused by {where}")
    if isinstance(exc, (EOFError, asyncio.IncompleteReadError, ConnectionResetError)):
        return ProbeError(ErrorKind.PROTOCOL, f"{where} closed the connection mid-conversation")
    return ProbeError(
        ErrorKind.UNAVAILABLE, f"cannot talk to {where}: {getattr(exc, 'strerror', None) or exc}"
    )


class _Session:
    """One SMTP conversation."""

    def __init__(self, host: str, port: int, config: SmtpConfig) -> None:
        self.host, self.port, self.config = host, port, config
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None
        self.phases: dict[str, float] = {}
        self._mark = time.perf_counter()

    def _done(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round((now - self._mark) * 1000, 3)
        self._mark = now

    async def run(self, ctx: ProbeContext, implicit_tls: bool) -> dict[str, Any]:
        destination = (await ctx.network.resolve(self.host, self.port))[0]
        self._done("resolve_ms")
        tls = self._tls_context() if implicit_tls else None
        # The checked address, never the name again; TLS still verifies the name.
        self.reader, self.writer = await asyncio.open_connection(
            destination.address, self.port, ssl=tls, server_hostname=self.host if tls else None
        )
        self._done("connect_ms")
        code, greeting = await self._reply()
        self._expect(code, 220, "greeting")
        extensions = await self._ehlo()
        if self.config.starttls:
            if "STARTTLS" not in extensions:
                raise ProbeError(ErrorKind.TLS, f"{self.host}:{self.port} does not offer STARTTLS")
            code, _ = await self._command("STARTTLS")
            self._expect(code, 220, "STARTTLS")
            await self.writer.start_tls(self._tls_context(), server_hostname=self.host)
            self._done("tls_ms")
            extensions = await self._ehlo()  # RFC 3207: forget what was said before TLS
        mechanisms = extensions.get("AUTH", "").upper().split()
        if self.config.username:
            await self._authenticate(mechanisms)
            self._done("auth_ms")
        await self._command("QUIT")
        self._done("probe_ms")
        ssl_object = self.writer.get_extra_info("ssl_object")
        return {
            "address": destination.address,
            "port": self.port,
            "greeting": greeting[0][:200] if greeting else "",
            "extensions": sorted(extensions),
            "auth_mechanisms": mechanisms,
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object else None,
            "phases": self.phases,
        }

    def _tls_context(self) -> ssl.SSLContext:
        ca = self.config.ca_pem
        try:
            ctx = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
        except ssl.SSLError as exc:
            raise ProbeError(ErrorKind.INVALID_CONFIG, "ca_pem holds no valid certificate") from exc
        if not self.config.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def _ehlo(self) -> dict[str, str]:
        code, lines = await self._command(f"EHLO {self.config.ehlo_name}")
        self._expect(code, 250, "EHLO")
        keywords = (line.split(" ", 1) for line in lines[1:])  # the first line greets
        return {k[0].upper(): (k[1] if len(k) > 1 else "") for k in keywords}

    async def _authenticate(self, mechanisms: list[str]) -> None:
        user, password = self.config.username or "", self.config.password
        secret = password.get_secret_value() if password else ""
        if "PLAIN" in mechanisms:
            code, _ = await self._command("AUTH PLAIN " + _b64(f"\0{user}\0{secret}"))
        elif "LOGIN" in mechanisms:
            code, _ = await self._command("AUTH LOGIN")
            self._expect(code, 334, "AUTH LOGIN")  # the server asks for the user name
            code, _ = await self._command(_b64(user))
            self._expect(code, 334, "AUTH LOGIN")  # then for the password
            code, _ = await self._command(_b64(secret))
        else:
            raise ProbeError(
                ErrorKind.AUTH, f"{self.host}:{self.port} offers no PLAIN or LOGIN authentication"
            )
        if code != 235:
            raise ProbeError(
                ErrorKind.AUTH, f"{self.host}:{self.port} refused the credentials (reply {code})"
            )

    async def _command(self, line: str) -> tuple[int, list[str]]:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self._reply()

    async def _reply(self) -> tuple[int, list[str]]:
        """One reply: ``250-first``, ``250-more``, ``250 last`` -> (250, texts)."""
        assert self.reader is not None
        texts: list[str] = []
        for _ in range(MAX_REPLY_LINES):
            raw = await self.reader.readline()
            if not raw:
                raise EOFError
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise ProbeError(ErrorKind.PROTOCOL, f"{self.host}:{self.port} does not speak SMTP")
            texts.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), texts
        raise ProbeError(ErrorKind.PROTOCOL, f"{self.host}:{self.port} sent an endless reply")

    def _expect(self, code: int, wanted: int, step: str) -> None:
        if code != wanted:
            kind = ErrorKind.UNAVAILABLE if code in (421, 450, 451, 554) else ErrorKind.UNEXPECTED_STATUS
            raise ProbeError(kind, f"{self.host}:{self.port} answered {code} to {step}, not {wanted}")

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self.writer is not None:
            self.writer.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
