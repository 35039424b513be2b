"""The example plugin (``examples/connectord-example-plugin``): its ``smtp`` type comes in
through the entry point group, is described like a built-in, and really tests a
real SMTP server (aiosmtpd, on loopback, started here) through the facade.

``make install`` installs the plugin; without it these tests fail and say how to install it.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import ssl
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import trustme

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import TestResult
from connectord.network import EgressPolicy, Network
from connectord.plugin import ENTRY_POINT_GROUP, ProbeContext, ProbeError
from connectord.settings import Settings
from connectord.types.registry import TypeRegistry

LOOPBACK = ["127.0.0.0/8", "::1/128"]
PLUGIN_DIR = Path(__file__).resolve().parent.parent / "examples" / "connectord-example-plugin"
USER = "mailer"
PASSWORD = f"smtp-{secrets.token_hex(8)}"
INSTALL = ".venv/bin/pip install -e examples/connectord-example-plugin (make install does it)"


@pytest.fixture(scope="module", autouse=True)
def plugin_installed() -> None:
    """Fail every test here, clearly, when the plugin is not installed."""
    if "smtp" not in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}:
        pytest.fail(f"the example plugin is not installed: {INSTALL}")


@dataclass
class Mail:
    """The two test servers: with STARTTLS and AUTH (``tls_port``), and plain with AUTH LOGIN only."""

    tls_port: int
    plain_port: int
    ca_pem: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mail() -> Iterator[Mail]:
    """aiosmtpd servers in this process (each in its own thread and event loop)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 235 or 535

    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)  # the name only, not 127.0.0.1
    servers = [
        Controller(
            object(), hostname="127.0.0.1", port=_free_port(), server_hostname="mail.example.test",
            tls_context=server_tls, authenticator=authenticate,
        ),
        Controller(
            object(), hostname="127.0.0.1", port=_free_port(), server_hostname="relay.example.test",
            authenticator=authenticate, auth_require_tls=False, auth_exclude_mechanism=["PLAIN"],
        ),
    ]  # fmt: skip
    for server in servers:
        server.start()
    try:
        yield Mail(servers[0].port, servers[1].port, ca.cert_pem.bytes().decode())
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def facade(tmp_path: Path) -> AsyncIterator[ConnectorsFacade]:
    """A facade on SQLite in a temporary folder, with loopback opened."""
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path, egress_allow=LOOPBACK)) as f:
        yield f


@pytest.fixture
async def tenant(facade: ConnectorsFacade) -> str:
    """A fresh tenant."""
    record, _ = await Admin(facade).create_tenant(f"plugin-{secrets.token_hex(4)}")
    return record.id


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def assert_no_leak(caplog: pytest.LogCaptureFixture, *found: TestResult | dict[str, Any]) -> None:
    """The password is in no result, no connector and no log record."""
    for item in found:
        assert PASSWORD not in json.dumps(item.to_dict() if isinstance(item, TestResult) else item)
    assert PASSWORD not in caplog.text


def test_the_registry_lists_and_describes_the_plugin_type() -> None:
    registry = TypeRegistry()
    assert "smtp" in registry.names()
    described = registry.get("smtp").describe()
    assert described["name"] == "smtp"
    assert described["capabilities"] == ["write"]
    props = described["config_schema"]["properties"]
    assert {"username", "starttls", "ca_pem", "password"} <= set(props)
    assert any(branch.get("writeOnly") for branch in props["password"]["anyOf"])
    assert "smtp" in {t["name"] for t in (registry.types()[n].describe() for n in registry.names())}


async def test_starttls_and_auth_through_the_facade(
    mail: Mail, facade: ConnectorsFacade, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"username": USER, "password": PASSWORD, "starttls": True, "ca_pem": mail.ca_pem}
    info = await facade.register_connector(
        tenant, "mail", "smtp", f"smtp://localhost:{mail.tls_port}", config
    )
    assert info.secret_fields == ["password"]
    assert info.capabilities == ["write"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    details = result.details
    assert details["greeting"].startswith("mail.example.test")
    assert details["tls"] is True
    assert details["tls_version"].startswith("TLS")
    assert {"PLAIN", "LOGIN"} <= set(details["auth_mechanisms"])
    assert set(details["phases"]) == {"resolve_ms", "connect_ms", "tls_ms", "auth_ms", "probe_ms"}
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.status == "connected"
    assert_no_leak(caplog, result, info.to_dict(), stored.to_dict())


async def test_wrong_password_is_auth(
    mail: Mail, facade: ConnectorsFacade, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"username": USER, "password": PASSWORD[::-1], "starttls": True, "ca_pem": mail.ca_pem}
    result = await facade.test_definition(tenant, "mail", "smtp", f"smtp://localhost:{mail.tls_port}", config)
    assert result.error_kind == "auth"
    assert "535" in (result.error or "")
    assert PASSWORD[::-1] not in json.dumps(result.to_dict())
    assert_no_leak(caplog, result)


async def test_the_certificate_name_is_checked(mail: Mail, facade: ConnectorsFacade, tenant: str) -> None:
    """The server certificate names ``localhost``; by address the STARTTLS handshake fails."""
    config = {"starttls": True, "ca_pem": mail.ca_pem}
    result = await facade.test_definition(tenant, "m", "smtp", f"smtp://127.0.0.1:{mail.tls_port}", config)
    assert result.error_kind == "tls"


async def test_auth_login_without_tls_only_when_allowed(
    mail: Mail, facade: ConnectorsFacade, tenant: str
) -> None:
    endpoint = f"smtp://127.0.0.1:{mail.plain_port}"
    config = {"username": USER, "password": PASSWORD}
    refused = await facade.test_definition(tenant, "relay", "smtp", endpoint, config)
    assert refused.error_kind == "invalid_config"
    allowed = await facade.test_definition(
        tenant, "relay", "smtp", endpoint, {**config, "allow_plaintext_auth": True}
    )
    assert allowed.success, allowed.error
    assert allowed.details["auth_mechanisms"] == ["LOGIN"]
    assert allowed.details["tls"] is False
    wrong = await facade.test_definition(
        tenant, "relay", "smtp", endpoint, {**config, "password": "nope", "allow_plaintext_auth": True}
    )
    assert wrong.error_kind == "auth"


async def test_starttls_that_is_not_offered_fails(mail: Mail) -> None:
    ctx = _context(f"smtp://127.0.0.1:{mail.plain_port}", {"starttls": True})
    with pytest.raises(ProbeError) as info:
        await TypeRegistry().get("smtp").probe(ctx)
    assert info.value.kind == "tls"


async def test_closed_port_is_refused_and_black_hole_times_out() -> None:
    smtp = TypeRegistry().get("smtp")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        with pytest.raises(ProbeError) as refused:
            await smtp.probe(_context(f"smtp://127.0.0.1:{closed.getsockname()[1]}", {}))
    assert refused.value.kind == "refused"
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # completes handshakes, never greets
        start = time.monotonic()
        with pytest.raises(ProbeError) as timeout:
            await smtp.probe(_context(f"smtp://127.0.0.1:{hole.getsockname()[1]}", {}, 1.0))
    assert timeout.value.kind == "timeout"
    assert time.monotonic() - start < 1 + 2


def _context(endpoint: str, config: dict[str, Any], timeout: float = 5.0) -> ProbeContext:
    model = TypeRegistry().get("smtp").config_model
    return ProbeContext(endpoint, model.model_validate(config), timeout, Network(EgressPolicy(LOOPBACK)))


def test_the_plugin_metadata_uses_the_spdx_license_string() -> None:
    """A ``license = {text = ...}`` table makes setuptools print a deprecation box on each install."""
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]  # the first to read the string form
