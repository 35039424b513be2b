"""The serverless probe against an HTTP function and moto's Lambda, on loopback.

HTTP: :class:`HttpFunction`, a standard-library server written for these tests
(health route, echoing invoke route, bearer or API-key auth). Lambda: two moto
servers: one without authentication (moto's default: any credentials pass) for
the function itself, and one with IAM authentication turned on, where wrong
credentials get moto's real ``InvalidClientTokenId`` / ``SignatureDoesNotMatch``.
(moto 5.2's Lambda rejects even valid signatures once IAM authentication is on:
it rebuilds GET requests with the headers as a body, so the success path runs
on the open server.)
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind
from connectord.plugin import ProbeError
from connectord.settings import Settings
from connectord.types.serverless import (
    ServerlessConfig,
    ServerlessType,
    aiohttp_error_kind,
    map_aiohttp_error,
    parse_http_url,
)
from tests.types.harness import LOOPBACK, ProbeHarness, black_hole_listener
from tests.types.peers_file import REGION, shared_moto, stop_shared_moto
from tests.types.peers_serverless import (
    FUNCTION_API_KEY,
    FUNCTION_NAME,
    FUNCTION_TOKEN,
    HttpFunction,
    create_function,
)
from tests.types.peers_vector import BlackHole, ServerProcess, free_port

PROBE = ServerlessType()
HARNESS = ProbeHarness(PROBE)
context, probe, failure = HARNESS.context, HARNESS.probe, HARNESS.failure


@pytest.fixture(scope="session")
def function() -> Iterator[HttpFunction]:
    server = HttpFunction()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_open() -> Iterator[ServerProcess]:
    """moto without authentication, with a python3.11 function."""
    server = shared_moto(enforce_auth=False)
    if "function" not in server.info:
        server.info["function"] = create_function(server)
    yield server
    stop_shared_moto()


@pytest.fixture(scope="session")
def moto_auth() -> Iterator[ServerProcess]:
    """moto with IAM authentication enforced."""
    yield shared_moto(enforce_auth=True)
    stop_shared_moto()


black_hole = pytest.fixture(scope="session")(black_hole_listener)


def lambda_config(server: ServerProcess, **overrides: Any) -> dict[str, Any]:
    return {
        "provider": "aws_lambda",
        "function_name": FUNCTION_NAME,
        "region": REGION,
        "endpoint_url": server.info["endpoint"],
        "access_key_id": server.info["access_key_id"],
        "secret_access_key": server.info["secret_access_key"],
        **overrides,
    }


# --- HTTP functions ------------------------------------------------------------------


async def test_http_health_get_is_the_default_and_never_posts(function: HttpFunction) -> None:
    before = len(function.requests)
    details = await probe(context(f"{function.url}/invoke"))
    assert (details["method"], details["status_code"]) == ("GET", 200)
    assert details["content_type"] == "application/json"
    assert {"resolve_ms", "connect_ms", "probe_ms"} <= set(details["phases"])
    sent = function.requests[before:]
    assert sent == [{"method": "GET", "path": "/health"}]


async def test_http_relative_health_path_extends_the_url(function: HttpFunction) -> None:
    details = await probe(
        context(f"{function.url}/secure", health_path="health", auth="api_key", api_key=FUNCTION_API_KEY)
    )
    assert details["status_code"] == 200
    assert function.requests[-1] == {"method": "GET", "path": "/secure/health"}


async def test_http_invoke_posts_an_empty_object_when_opted_in(function: HttpFunction) -> None:
    details = await probe(context(f"{function.url}/invoke", invoke=True))
    assert (details["method"], details["status_code"]) == ("POST", 200)
    assert function.requests[-1] == {"method": "POST", "path": "/invoke", "body": {}}


@pytest.mark.parametrize(
    ("auth", "good"),
    [("bearer", {"bearer_token": FUNCTION_TOKEN}), ("api_key", {"api_key": FUNCTION_API_KEY})],
)
async def test_http_auth_right_and_wrong(
    function: HttpFunction, auth: str, good: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = f"{function.url}/secure/invoke"
    ctx = context(endpoint, auth=auth, health_path="/secure/health", **good)
    assert (await probe(ctx))["status_code"] == 200
    assert function.requests[-1] == {"method": "GET", "path": "/secure/health"}
    wrong = {name: f"wrong-{secrets.token_hex(6)}" for name in good}
    error = await failure(context(endpoint, auth=auth, health_path="/secure/health", **wrong))
    assert error.kind is ErrorKind.AUTH
    assert error.details["status_code"] == 401
    for value in [*wrong.values(), *good.values()]:
        assert value not in error.message
        assert value not in caplog.text


@pytest.mark.parametrize(
    ("path", "kind"), [("/nowhere", ErrorKind.NOT_FOUND), ("/broken/health", ErrorKind.UNEXPECTED_STATUS)]
)
async def test_http_bad_status(function: HttpFunction, path: str, kind: ErrorKind) -> None:
    assert (await failure(context(function.url, health_path=path))).kind is kind


async def test_http_closed_port_is_refused_quickly() -> None:
    start = time.monotonic()
    assert (await failure(context(f"http://127.0.0.1:{free_port()}"))).kind is ErrorKind.REFUSED
    assert time.monotonic() - start < 2


async def test_http_black_hole_times_out_within_bound(black_hole: BlackHole) -> None:
    start = time.monotonic()
    error = await failure(context(f"http://127.0.0.1:{black_hole.port}", timeout=1.0))
    assert error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 1.0 + 2


async def test_http_egress_denied_sends_nothing(function: HttpFunction) -> None:
    before = len(function.requests)
    error = await failure(context(function.url, allow=False))
    assert error.kind is ErrorKind.EGRESS_DENIED
    assert len(function.requests) == before


async def test_http_redirect_is_not_followed(function: HttpFunction) -> None:
    """A 3xx is reported, not followed: a redirect could lead anywhere."""
    before = len(function.requests)
    error = await failure(context(function.url, health_path="/moved"))
    assert error.kind is ErrorKind.UNEXPECTED_STATUS
    assert error.details["status_code"] == 302
    assert function.requests[before:] == [{"method": "GET", "path": "/moved"}]


def test_parse_http_url() -> None:
    assert parse_http_url("h:9", default_port=8000) == ("http", "h", 9, "")
    assert parse_http_url("h", default_port=8000) == ("http", "h", 8000, "")
    assert parse_http_url("https://h/base/", default_port=8000) == ("https", "h", 443, "/base")
    for bad in ("", "ftp://h", "http://u:p@h", "http://h:x"):
        with pytest.raises(ProbeError):
            parse_http_url(bad)


def test_aiohttp_error_mapping_covers_every_exception_class() -> None:
    import aiohttp.client_exceptions as ce

    classes = [getattr(ce, name) for name in ce.__all__]
    assert len(classes) > 20
    for cls in classes:
        kind = aiohttp_error_kind(cls)
        assert kind is not None, cls
        assert kind is not ErrorKind.INTERNAL
    assert aiohttp_error_kind(ce.ClientConnectorCertificateError) is ErrorKind.TLS
    assert aiohttp_error_kind(ce.ClientConnectorDNSError) is ErrorKind.DNS
    assert aiohttp_error_kind(ce.ConnectionTimeoutError) is ErrorKind.TIMEOUT
    assert map_aiohttp_error(ConnectionRefusedError(), "h:1").kind is ErrorKind.REFUSED


# --- AWS Lambda (moto) ---------------------------------------------------------------


async def test_lambda_get_function_and_dry_run(moto_open: ServerProcess) -> None:
    details = await probe(context(None, **lambda_config(moto_open)))
    assert details["runtime"] == "python3.11"
    assert details["state"] == "Active"
    assert details["memory_mb"] == 256
    assert details["last_modified"] == moto_open.info["function"]["LastModified"]
    assert details["dry_run_status"] == 204
    assert {"resolve_ms", "get_function_ms", "dry_run_ms"} <= set(details["phases"])


async def test_lambda_missing_function_is_not_found(moto_open: ServerProcess) -> None:
    error = await failure(context(None, **lambda_config(moto_open, function_name="nope")))
    assert error.kind is ErrorKind.NOT_FOUND
    assert "ResourceNotFoundException" in error.message


@pytest.mark.parametrize("wrong", ["access_key_id", "secret_access_key"])
async def test_lambda_wrong_credentials_are_auth(
    moto_auth: ServerProcess, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = f"AKIA{secrets.token_hex(8).upper()}"
    error = await failure(context(None, **lambda_config(moto_auth, **{wrong: bad})))
    assert error.kind is ErrorKind.AUTH, error.message
    secret = moto_auth.info["secret_access_key"]
    assert secret not in error.message
    assert secret not in caplog.text


async def test_lambda_closed_port_is_refused_quickly(moto_open: ServerProcess) -> None:
    start = time.monotonic()
    config = lambda_config(moto_open, endpoint_url=f"http://127.0.0.1:{free_port()}")
    assert (await failure(context(None, **config))).kind is ErrorKind.REFUSED
    assert time.monotonic() - start < 2


async def test_lambda_black_hole_times_out_within_bound(
    moto_open: ServerProcess, black_hole: BlackHole
) -> None:
    start = time.monotonic()
    config = lambda_config(moto_open, endpoint_url=f"http://127.0.0.1:{black_hole.port}")
    error = await failure(context(None, timeout=1.0, **config))
    assert error.kind is ErrorKind.TIMEOUT, error.message
    assert time.monotonic() - start < 1.0 + 2


async def test_lambda_egress_denied(moto_open: ServerProcess) -> None:
    error = await failure(context(None, allow=False, **lambda_config(moto_open)))
    assert error.kind is ErrorKind.EGRESS_DENIED


# --- config and facade ---------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"auth": "bearer"},
        {"auth": "api_key"},
        {"provider": "aws_lambda", "function_name": "f", "region": "eu-west-1"},
        {"provider": "aws_lambda", "function_name": "f", "access_key_id": "a", "secret_access_key": "s"},
        {"ca_pem": "/etc/ssl/certs/ca.pem"},
        {"password": "p"},
        {"auth": "api_key", "api_key": "k", "api_key_header": "X-Key\r\nInjected: 1"},
        {"health_path": "/health now"},
        {"provider": "azure_functions"},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        ServerlessConfig.model_validate(config)


def test_schema_publishes_providers_and_marks_secrets() -> None:
    schema = ServerlessConfig.model_json_schema()
    assert schema["$defs"]["ServerlessProvider"]["enum"] == ["http", "aws_lambda"]
    for name in ("bearer_token", "api_key", "secret_access_key", "session_token"):
        assert any(option.get("writeOnly") for option in schema["properties"][name]["anyOf"]), name
    assert all("description" in spec for spec in schema["properties"].values())


@pytest.fixture
async def loop_facade(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    settings = Settings(data_dir=tmp_path, egress_allow=LOOPBACK)
    async with ConnectorsFacade(settings=settings) as facade:
        record, _ = await Admin(facade).create_tenant(f"fn-{secrets.token_hex(4)}")
        yield facade, record.id


async def test_facade_http_function_with_bearer(
    loop_facade: tuple[ConnectorsFacade, str], function: HttpFunction, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    config = {"auth": "bearer", "bearer_token": FUNCTION_TOKEN}
    info = await facade.register_connector(
        tenant, "fn", "serverless", f"{function.url}/secure/invoke", config
    )
    assert info.secret_fields == ["bearer_token"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert FUNCTION_TOKEN not in json.dumps(result.to_dict()) + json.dumps(info.to_dict()) + caplog.text


async def test_facade_lambda(
    loop_facade: tuple[ConnectorsFacade, str], moto_open: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    info = await facade.register_connector(tenant, "lam", "serverless", None, lambda_config(moto_open))
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["dry_run_status"] == 204
    secret = moto_open.info["secret_access_key"]
    assert secret not in json.dumps(result.to_dict()) + caplog.text


async def test_facade_black_hole_is_timeout(
    loop_facade: tuple[ConnectorsFacade, str], black_hole: BlackHole
) -> None:
    facade, tenant = loop_facade
    info = await facade.register_connector(
        tenant, "slow", "serverless", f"http://127.0.0.1:{black_hole.port}", {"timeout": 1.0}
    )
    start = time.monotonic()
    result = await facade.test_connector(info.id, tenant)
    assert result.error_kind == "timeout"
    assert time.monotonic() - start < 3
