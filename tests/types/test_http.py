"""The http probe against real servers on loopback (``tests/types/peers_http.py``):
httpbin over HTTP and HTTPS (a trustme CA), an OAuth 2.0 token server,
listeners that never answer, a closed port and a server that does not speak
HTTP. Run directly (``ProbeContext``) and through the facade.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.client_exceptions
import pytest

from connectord.admin import Admin
from connectord.errors import ValidationError
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind, TestResult
from connectord.network import EgressPolicy, Network
from connectord.plugin import ProbeContext, ProbeError
from connectord.settings import Settings
from connectord.types.http import HttpConfig, HttpType, error_kind, is_credential_header
from tests.types import peers_http
from tests.types.peers_http import Peer, TlsFiles, TokenPeer

LOOPBACK = ["127.0.0.0/8", "::1/128"]
PASSWORD = "pw-Zq81-secret"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A trustme CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    return peers_http.make_tls(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def httpbin_plain() -> Iterator[Peer]:
    """httpbin over HTTP."""
    peer = peers_http.start_httpbin()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def httpbin_tls(tls: TlsFiles) -> Iterator[Peer]:
    """httpbin over HTTPS with the trustme certificate."""
    peer = peers_http.start_httpbin(tls)
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def token_server() -> Iterator[TokenPeer]:
    """The OAuth 2.0 token server."""
    peer = peers_http.start_token_server()
    yield peer
    peer.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, to check no secret is ever logged."""
    caplog.set_level(logging.DEBUG)
    return caplog


async def probe(
    endpoint: str, *, bound: float = 5, allow: list[str] | None = None, **config: Any
) -> tuple[bool, dict[str, Any], str | None]:
    """Run the probe directly with ``bound`` as its timeout: ``(success, details, error text)``."""
    ctx = ProbeContext(
        endpoint=endpoint,
        config=HttpConfig.model_validate(config),
        timeout=bound,
        network=Network(EgressPolicy(LOOPBACK if allow is None else allow)),
    )
    try:
        outcome = await HttpType().probe(ctx)
    except ProbeError as exc:
        return False, {**exc.details, "error_kind": str(exc.kind)}, exc.message
    return True, outcome.details, None


def assert_no_secret(secrets: list[str], *texts: Any, logs: pytest.LogCaptureFixture | None = None) -> None:
    """No secret value in any result, error or log record."""
    blob = json.dumps([t.to_dict() if isinstance(t, TestResult) else t for t in texts], default=str)
    if logs is not None:
        blob += "\n".join(r.getMessage() for r in logs.records)
    for secret in secrets:
        assert secret not in blob


# --- success and details --------------------------------------------------------------


async def test_get_reports_status_version_server_and_phases(httpbin_plain: Peer) -> None:
    ok, details, error = await probe(httpbin_plain.url + "/get")
    assert ok, error
    assert details["status_code"] == 200
    assert details["http_version"] == "HTTP/1.1"
    assert "Werkzeug" in details["server"]
    assert details["content_type"] == "application/json"
    assert details["address"] == "127.0.0.1"
    assert {"resolve_ms", "connect_ms", "first_byte_ms"} <= details["phases"].keys()
    assert "tls_version" not in details


async def test_head_and_health_path_joined_to_the_endpoint(httpbin_plain: Peer) -> None:
    ok, details, error = await probe(
        httpbin_plain.url + "/anything/", method="HEAD", health_path="/health?deep=1"
    )
    assert ok, error
    assert details["url"] == httpbin_plain.url + "/anything/health?deep=1"
    assert details["body_bytes_read"] == 0


async def test_expected_status_list(httpbin_plain: Peer) -> None:
    ok, details, _ = await probe(httpbin_plain.url + "/status/418", expected_status=[418])
    assert ok
    assert details["status_code"] == 418
    ok, details, error = await probe(httpbin_plain.url + "/status/500")
    assert not ok
    assert details["error_kind"] == "unexpected_status"
    assert details["status_code"] == 500
    assert error is not None
    assert "500" in error
    ok, details, _ = await probe(httpbin_plain.url + "/status/200", expected_status=[204])
    assert details["error_kind"] == "unexpected_status"


# --- auth kinds -----------------------------------------------------------------------


async def test_basic_auth_right_and_wrong(httpbin_plain: Peer, logs: pytest.LogCaptureFixture) -> None:
    url = httpbin_plain.url + "/basic-auth/u/" + PASSWORD
    ok, details, error = await probe(url, auth={"kind": "basic", "username": "u", "password": PASSWORD})
    assert ok, error
    assert PASSWORD not in details["url"]  # a secret is scrubbed even from the URL it is part of
    wrong = {"kind": "basic", "username": "u", "password": "nope-123"}
    ok, details, error = await probe(url, auth=wrong)
    assert not ok
    assert details["error_kind"] == "auth"
    assert details["status_code"] == 401
    assert_no_secret(["nope-123"], details, error, logs=logs)
    ok, details, _ = await probe(url)
    assert details["error_kind"] == "auth"


async def test_password_from_the_url_gives_basic_auth(httpbin_plain: Peer) -> None:
    url = httpbin_plain.url.replace("://", "://u@") + "/basic-auth/u/" + PASSWORD
    ok, details, error = await probe(url, password=PASSWORD)
    assert ok, error
    assert "u@" not in details["url"]


async def test_bearer(httpbin_plain: Peer, logs: pytest.LogCaptureFixture) -> None:
    ok, details, error = await probe(
        httpbin_plain.url + "/bearer", auth={"kind": "bearer", "token": "tok-Hq2-secret"}
    )
    assert ok, error
    ok, details, _ = await probe(httpbin_plain.url + "/bearer")
    assert details["error_kind"] == "auth"
    assert_no_secret(["tok-Hq2-secret"], details, logs=logs)


async def test_api_key_in_header_and_query_arrives(
    token_server: TokenPeer, httpbin_plain: Peer, logs: pytest.LogCaptureFixture
) -> None:
    key = token_server.api_key
    header = {"kind": "api_key", "name": "X-Api-Key", "value": key, "in": "header"}
    query = {"kind": "api_key", "name": "api_key", "value": key, "in": "query"}
    ok, _, error = await probe(token_server.url + "/key-header", auth=header)
    assert ok, error
    ok, details, error = await probe(token_server.url + "/key-query", auth=query)
    assert ok, error
    assert details["url"] == token_server.url + "/key-query?api_key=[redacted]"
    wrong = {**header, "value": "wrong-key-1"}
    ok, details, _ = await probe(token_server.url + "/key-header", auth=wrong)
    assert details["error_kind"] == "auth"
    ok, details, error = await probe(httpbin_plain.url + "/anything", auth=query)
    assert ok, error
    assert_no_secret([key], details, logs=logs)


async def test_oauth2_client_credentials(
    token_server: TokenPeer, httpbin_plain: Peer, logs: pytest.LogCaptureFixture
) -> None:
    auth = {
        "kind": "oauth2_client_credentials",
        "token_url": token_server.url + "/token",
        "client_id": token_server.client_id,
        "client_secret": token_server.client_secret,
        "scope": "read",
    }
    ok, details, error = await probe(httpbin_plain.url + "/bearer", auth=auth)
    assert ok, error
    assert details["phases"]["auth_ms"] > 0
    ok, details, error = await probe(token_server.url + "/resource", auth={**auth, "client_auth": "body"})
    assert ok, error  # the resource accepts only the token the server issued
    ok, bad, error = await probe(httpbin_plain.url + "/bearer", auth={**auth, "client_secret": "wrong-1"})
    assert not ok
    assert bad["error_kind"] == "auth"
    assert error is not None
    assert "invalid_client" in error
    secrets = [token_server.client_secret, token_server.token]
    assert_no_secret(secrets, details, bad, error, logs=logs)


async def test_oauth2_token_url_is_checked_by_the_egress_policy(token_server: TokenPeer) -> None:
    auth = {
        "kind": "oauth2_client_credentials",
        "token_url": f"http://127.0.0.2:{token_server.port}/token",
        "client_id": "c",
        "client_secret": "s-123",
    }
    ok, details, _ = await probe(token_server.url + "/resource", auth=auth, allow=["127.0.0.1/32"])
    assert not ok
    assert details["error_kind"] == "egress_denied"
    assert details["denied_address"] == "127.0.0.2"


# --- redirects ------------------------------------------------------------------------


async def test_redirect_chains_are_reported(httpbin_plain: Peer) -> None:
    ok, details, error = await probe(httpbin_plain.url + "/redirect/3")
    assert ok, error
    assert [r["status"] for r in details["redirects"]] == [302, 302, 302]
    assert details["redirects"][0]["url"] == httpbin_plain.url + "/redirect/3"
    assert details["url"] == httpbin_plain.url + "/get"
    ok, details, error = await probe(httpbin_plain.url + "/absolute-redirect/2")
    assert ok, error
    assert len(details["redirects"]) == 2


async def test_redirects_not_followed_and_too_many(httpbin_plain: Peer) -> None:
    ok, details, _ = await probe(httpbin_plain.url + "/redirect/1", follow_redirects=False)
    assert ok
    assert details["status_code"] == 302
    ok, details, _ = await probe(httpbin_plain.url + "/redirect/7")
    assert not ok
    assert details["error_kind"] == "protocol"
    assert len(details["redirects"]) == 6


async def test_redirect_to_a_denied_address_is_refused(httpbin_plain: Peer) -> None:
    target = f"http://127.0.0.2:{httpbin_plain.port}/get"
    ok, details, error = await probe(httpbin_plain.url + "/redirect-to?url=" + target, allow=["127.0.0.1/32"])
    assert not ok
    assert details["error_kind"] == "egress_denied"
    assert details["denied_address"] == "127.0.0.2"
    assert len(details["redirects"]) == 1
    assert error is not None
    assert "egress policy" in error


async def test_credentials_do_not_follow_a_redirect_to_another_host(httpbin_plain: Peer) -> None:
    elsewhere = f"http://localhost:{httpbin_plain.port}/basic-auth/u/{PASSWORD}"
    auth = {"kind": "basic", "username": "u", "password": PASSWORD}
    ok, details, _ = await probe(httpbin_plain.url + "/redirect-to?url=" + elsewhere, auth=auth)
    assert not ok
    assert details["error_kind"] == "auth"  # the other host never saw the password


# --- TLS ------------------------------------------------------------------------------


async def test_https_with_the_ca_reports_tls(httpbin_tls: Peer, tls: TlsFiles) -> None:
    ok, details, error = await probe(httpbin_tls.url + "/get", ca_pem=tls.ca_pem)
    assert ok, error
    assert details["tls_version"].startswith("TLS")
    assert details["certificate_days_left"] > 300
    assert details["certificate_expires_at"]
    assert {"connect_ms", "tls_ms", "first_byte_ms"} <= details["phases"].keys()


async def test_https_by_name_verifies_the_name(httpbin_tls: Peer, tls: TlsFiles) -> None:
    ok, details, error = await probe(f"https://localhost:{httpbin_tls.port}/get", ca_pem=tls.ca_pem)
    assert ok, error
    assert details["address"] in {"127.0.0.1", "::1"}


async def test_https_without_the_ca_is_tls(httpbin_tls: Peer) -> None:
    ok, details, error = await probe(httpbin_tls.url + "/get")
    assert not ok
    assert details["error_kind"] == "tls"
    assert error is not None
    assert "certificate" in error or "issuer" in error
    ok, details, _ = await probe(httpbin_tls.url + "/get", tls_verify=False)
    assert ok
    assert details["certificate_days_left"] > 300


async def test_tls_to_a_plain_server_is_tls(httpbin_plain: Peer) -> None:
    ok, details, _ = await probe(httpbin_plain.url.replace("http://", "https://") + "/get")
    assert not ok
    assert details["error_kind"] == "tls"


# --- unreachable ----------------------------------------------------------------------


async def test_closed_port_is_refused_quickly() -> None:
    start = time.monotonic()
    ok, details, _ = await probe(f"http://127.0.0.1:{peers_http.closed_port()}/")
    assert not ok
    assert details["error_kind"] == "refused"
    assert time.monotonic() - start < 2


async def test_full_backlog_times_out_within_the_bound() -> None:
    with peers_http.full_backlog() as port:
        start = time.monotonic()
        ok, details, error = await probe(f"http://127.0.0.1:{port}/", bound=1)
    assert not ok
    assert details["error_kind"] == "timeout"
    assert time.monotonic() - start < 1 + 2
    assert error is not None
    assert "connecting" in error


async def test_silent_server_times_out_within_the_bound() -> None:
    with peers_http.silent_listener() as port:
        start = time.monotonic()
        ok, details, error = await probe(f"http://127.0.0.1:{port}/", bound=1)
    assert not ok
    assert details["error_kind"] == "timeout"
    assert time.monotonic() - start < 1 + 2
    assert error is not None
    assert "waiting for the response" in error


async def test_slow_endpoint_past_the_timeout(httpbin_plain: Peer) -> None:
    start = time.monotonic()
    ok, details, _ = await probe(httpbin_plain.url + "/delay/3", bound=1)
    assert not ok
    assert details["error_kind"] == "timeout"
    assert time.monotonic() - start < 1 + 2


@pytest.fixture
async def not_http() -> AsyncIterator[int]:
    """A server that answers every connection with an SSH banner."""

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_server_that_is_not_http_is_protocol(not_http: int) -> None:
    ok, details, _ = await probe(f"http://127.0.0.1:{not_http}/")
    assert not ok
    assert details["error_kind"] == "protocol"


async def test_invalid_endpoints_are_invalid_config() -> None:
    for endpoint in ("ftp://127.0.0.1/", "127.0.0.1:80", "", "http:///nohost", "http://foo.123/"):
        ok, details, _ = await probe(endpoint)
        assert not ok
        assert details["error_kind"] == "invalid_config", endpoint


# --- config ---------------------------------------------------------------------------


def test_credential_headers_move_to_secret_headers() -> None:
    config = HttpConfig.model_validate(
        {
            "headers": {"X-Trace": "1", "authorization": "Bearer a", "X-Auth-Token": "b", "Cookie": "c=d"},
            "secret_headers": {"X-Other": "e"},
        }
    )
    assert config.headers == {"X-Trace": "1"}
    assert set(config.secret_headers) == {"authorization", "X-Auth-Token", "Cookie", "X-Other"}
    for name in ("X-API-KEY", "Proxy-Authorization", "X-Session-Id", "My-Secret", "x-token", "apikey"):
        assert is_credential_header(name), name
    assert not is_credential_header("Accept")


@pytest.mark.parametrize(
    "config",
    [
        {"method": "POST"},
        {"method": "DELETE"},
        {"health_path": "//evil.example/x"},
        {"health_path": "health"},
        {"health_path": "/a b"},
        {"headers": {"X-A": "1\r\nX-B: 2"}},
        {"headers": {"Host": "other"}},
        {"headers": {"Bad Name": "1"}},
        {"headers": {"x-a": "1"}, "secret_headers": {"X-A": "2"}},
        {"ca_pem": "not a certificate"},
        {"ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        {"ca_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
        {"expected_status": [99]},
        {"expected_status": []},
        {"auth": {"kind": "digest"}},
        {"auth": {"kind": "basic", "username": "a:b", "password": "x"}},
        {
            "auth": {
                "kind": "oauth2_client_credentials",
                "token_url": "file:///etc/passwd",
                "client_id": "c",
                "client_secret": "s",
            }
        },
        {"tls_client_cert_path": "/etc/ssl/private/key.pem"},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):  # pydantic's ValidationError
        HttpConfig.model_validate(config)


def test_schema_marks_secrets_write_only() -> None:
    schema = HttpType().describe()["config_schema"]
    assert schema["properties"]["secret_headers"]["additionalProperties"]["writeOnly"] is True
    assert schema["properties"]["method"]["enum"] == ["GET", "HEAD"]
    defs = schema["$defs"]
    assert defs["BearerAuth"]["properties"]["token"]["writeOnly"] is True
    assert defs["OAuth2ClientCredentials"]["properties"]["client_secret"]["writeOnly"] is True
    assert "in" in defs["ApiKeyAuth"]["properties"]


# --- error mapping --------------------------------------------------------------------


def _aiohttp_exception_classes() -> list[type[BaseException]]:
    module = aiohttp.client_exceptions
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__.startswith("aiohttp")
    ]


@pytest.mark.parametrize("cls", _aiohttp_exception_classes(), ids=lambda c: c.__name__)
def test_every_aiohttp_exception_maps_to_a_known_kind(cls: type[BaseException]) -> None:
    assert error_kind(cls) is not ErrorKind.INTERNAL


def test_the_walk_covers_the_exported_classes() -> None:
    names = {c.__name__ for c in _aiohttp_exception_classes()}
    assert set(aiohttp.client_exceptions.__all__) <= names
    assert len(names) >= 25


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(111, "refused"), ErrorKind.REFUSED),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (OSError(113, "No route to host"), ErrorKind.UNAVAILABLE),
        (ConnectionResetError(104, "reset"), ErrorKind.PROTOCOL),
        (UnicodeError("idna"), ErrorKind.INVALID_CONFIG),
        (KeyError("bug"), ErrorKind.INTERNAL),
    ],
)
def test_standard_library_errors(exc: BaseException, kind: ErrorKind) -> None:
    assert error_kind(exc) is kind


# --- through the facade ---------------------------------------------------------------


@pytest.fixture
async def loopback_facade(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    """A SQLite facade with loopback opened, and a tenant."""
    settings = Settings(data_dir=tmp_path, egress_allow=LOOPBACK)
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("http-tests")
        yield facade, tenant.id


async def test_facade_register_and_test(
    loopback_facade: tuple[ConnectorsFacade, str], token_server: TokenPeer, logs: pytest.LogCaptureFixture
) -> None:
    facade, tenant = loopback_facade
    user, password = token_server.client_id, token_server.client_secret
    info = await facade.register_connector(
        tenant,
        "basic-in-url",
        "http",
        endpoint=token_server.url.replace("://", f"://{user}:{password}@"),
        config={"health_path": "/basic", "headers": {"X-Trace": "t1"}},
    )
    assert info.secret_fields == ["password"]
    assert info.capabilities == ["read", "write", "query"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["status_code"] == 200
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.status == "connected"
    assert_no_secret([password], result, stored.to_dict(), logs=logs)


async def test_facade_moves_auth_headers_to_secrets(
    loopback_facade: tuple[ConnectorsFacade, str], httpbin_plain: Peer, logs: pytest.LogCaptureFixture
) -> None:
    facade, tenant = loopback_facade
    info = await facade.register_connector(
        tenant,
        "bearer",
        "http",
        endpoint=httpbin_plain.url + "/bearer",
        config={"headers": {"Authorization": "Bearer hdr-9xk-secret", "X-Trace": "t"}},
    )
    assert info.config["headers"] == {"X-Trace": "t"}
    assert info.secret_fields == ["secret_headers.Authorization"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert_no_secret(["hdr-9xk-secret"], result, info.to_dict(), logs=logs)


async def test_facade_failures_keep_their_kind(
    loopback_facade: tuple[ConnectorsFacade, str], httpbin_plain: Peer, logs: pytest.LogCaptureFixture
) -> None:
    facade, tenant = loopback_facade
    wrong = await facade.register_connector(
        tenant,
        "wrong",
        "http",
        endpoint=httpbin_plain.url + "/basic-auth/u/right",
        config={"auth": {"kind": "basic", "username": "u", "password": "wrong-pass-77"}},
    )
    result = await facade.test_connector(wrong.id, tenant)
    assert not result.success
    assert result.error_kind == "auth"
    stored = await facade.get_connector(wrong.id, tenant)
    assert stored is not None
    assert stored.status == "error"
    closed = await facade.register_connector(
        tenant, "closed", "http", endpoint=f"http://127.0.0.1:{peers_http.closed_port()}/"
    )
    assert (await facade.test_connector(closed.id, tenant)).error_kind == "refused"
    assert_no_secret(["wrong-pass-77"], result, logs=logs)


async def test_facade_denies_an_address_outside_the_allow_list(tmp_path: Path, httpbin_plain: Peer) -> None:
    settings = Settings(data_dir=tmp_path, egress_allow=["127.0.0.1/32"])
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("deny")
        info = await facade.register_connector(
            tenant.id, "other-loopback", "http", endpoint=f"http://127.0.0.2:{httpbin_plain.port}/get"
        )
        result = await facade.test_connector(info.id, tenant.id)
    assert not result.success
    assert result.error_kind == "egress_denied"


async def test_facade_refuses_post(loopback_facade: tuple[ConnectorsFacade, str]) -> None:
    facade, tenant = loopback_facade
    with pytest.raises(ValidationError) as caught:
        await facade.register_connector(
            tenant, "post", "http", endpoint="http://127.0.0.1/", config={"method": "POST"}
        )
    assert any(e.loc[-1] == "method" for e in caught.value.errors)


async def test_facade_timeout_is_bounded(loopback_facade: tuple[ConnectorsFacade, str]) -> None:
    facade, tenant = loopback_facade
    with peers_http.silent_listener() as port:
        info = await facade.register_connector(
            tenant, "silent", "http", endpoint=f"http://127.0.0.1:{port}/", config={"timeout": 1}
        )
        start = time.monotonic()
        result = await facade.test_connector(info.id, tenant)
    assert not result.success
    assert result.error_kind == "timeout"
    assert time.monotonic() - start < 1 + 2
    assert result.error is not None
    assert "within 1 s" in result.error


def _open_sockets() -> int:
    """Sockets this process holds open (Linux /proc)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # the descriptor listdir itself used is gone
            continue
    return count


async def test_concurrent_tests_keep_their_own_addresses_and_close_every_connection(
    httpbin_plain: Peer,
) -> None:
    before = _open_sockets()
    closed = peers_http.closed_port()
    runs = [
        probe(httpbin_plain.url + "/get"),
        probe(f"http://localhost:{httpbin_plain.port}/get"),
        probe(f"http://127.0.0.1:{closed}/"),
        probe(f"http://127.0.0.2:{httpbin_plain.port}/get", allow=["127.0.0.1/32"]),
    ] * 5
    results = await asyncio.gather(*runs)
    kinds = [None if ok else details["error_kind"] for ok, details, _ in results]
    assert kinds == [None, None, "refused", "egress_denied"] * 5
    await asyncio.sleep(0.05)  # an aborted transport closes its socket on the next loop turn
    assert _open_sockets() <= before  # no connection pooled or leaked
