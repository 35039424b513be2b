"""Secret references (issue 14.5): ``env:``, ``file:`` and ``aws-sm:`` values of secret fields,
allowed only as the operator lists them, resolved when a test runs, never echoed.

A loopback HTTP server checks the bearer token each test sends, so a reference that
resolved to the wrong value fails for real; AWS Secrets Manager is moto's server.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectord import ConnectorsFacade, Settings
from connectord.errors import ValidationError
from connectord.secret_refs import Reference, ReferencePolicy, parse
from tests.types.peers_file import REGION, start_moto

TOKEN = "tok-" + os.urandom(8).hex()
TENANT = "t1"


class _TokenServer(http.server.ThreadingHTTPServer):
    """Answers 200 to ``Authorization: Bearer <expected>``, 401 otherwise."""

    expected = TOKEN


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _TokenServer)
        ok = self.headers.get("Authorization") == f"Bearer {self.server.expected}"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[_TokenServer]:
    server = _TokenServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _settings(tmp_path: Path, **refs: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", egress_allow=["127.0.0.0/8"], secret_ref_ttl=0, **refs)


async def _register_and_test(facade: ConnectorsFacade, url: str, token: str, name: str = "api") -> Any:
    config = {"auth": {"kind": "bearer", "token": token}}
    info = await facade.register_connector(TENANT, name, "http", url, config)
    return info, await facade.test_connector(info.id, TENANT)


def _everything_shown(facade: ConnectorsFacade, *parts: Any) -> str:
    return json.dumps([p.to_dict() if hasattr(p, "to_dict") else p for p in parts], default=str)


# --- parsing and the policy ------------------------------------------------------------


def test_parse_reads_the_three_kinds_and_leaves_plain_values() -> None:
    assert parse("env:DB_PASSWORD") == Reference("env", "DB_PASSWORD")
    assert parse("file:/run/secrets/db") == Reference("file", "/run/secrets/db")
    assert parse("aws-sm:prod/db#password") == Reference("aws-sm", "prod/db", "password")
    assert parse("aws-sm:arn:aws:secretsmanager:eu-west-1:1:secret:x") == Reference(
        "aws-sm", "arn:aws:secretsmanager:eu-west-1:1:secret:x"
    )
    assert parse("hunter2") is None
    assert parse("vault:x") is None


def test_the_policy_allows_only_what_the_operator_lists(tmp_path: Path) -> None:
    (tmp_path / "t1").mkdir()
    policy = ReferencePolicy(
        env=("APP_*", "DB_PASSWORD"), folders=(f"{tmp_path}/{{tenant}}",), aws_sm=("cd/{tenant}/*",)
    )
    assert policy.check(Reference("env", "APP_TOKEN"), "t1") is None
    assert policy.check(Reference("env", "DB_PASSWORD"), "t1") is None
    assert "not allowed" in (policy.check(Reference("env", "HOME"), "t1") or "")
    assert "variable name" in (policy.check(Reference("env", "A-B"), "t1") or "")
    assert policy.check(Reference("file", f"{tmp_path}/t1/token"), "t1") is None
    assert "not allowed" in (policy.check(Reference("file", f"{tmp_path}/t2/token"), "t1") or "")
    assert "not allowed" in (policy.check(Reference("file", f"{tmp_path}/t1/../t2/token"), "t1") or "")
    assert "absolute" in (policy.check(Reference("file", "token"), "t1") or "")
    assert policy.check(Reference("aws-sm", "cd/t1/db", "password"), "t1") is None
    assert "not allowed" in (policy.check(Reference("aws-sm", "cd/t2/db"), "t1") or "")
    assert "not allowed" in (ReferencePolicy().check(Reference("env", "APP_TOKEN"), "t1") or "")


# --- env: and file: end to end ---------------------------------------------------------------


async def test_env_reference_is_resolved_at_test_time_and_never_shown(
    tmp_path: Path, target: _TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CD_TEST_TOKEN", TOKEN)
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    async with ConnectorsFacade(settings=_settings(tmp_path, secret_ref_env=["CD_TEST_*"])) as facade:
        info, result = await _register_and_test(facade, url, "env:CD_TEST_TOKEN")
        assert result.success, result.error
        assert info.secret_fields == ["auth.token"]
        # The reference is what is stored (sealed); the value is read at each test.
        assert await facade._open_secrets(info) == {"auth": {"token": "env:CD_TEST_TOKEN"}}
        monkeypatch.setenv("CD_TEST_TOKEN", "rotated")
        again = await facade.test_connector(info.id, TENANT)
        assert (again.success, again.error_kind) == (False, "auth")
        history = await facade.history(info.id, TENANT)
        audit = await facade.audit(TENANT)
        shown = _everything_shown(facade, info, result, again, *history.items, *audit.items)
        assert TOKEN not in shown
        assert "rotated" not in shown


async def test_a_missing_variable_fails_the_test_naming_the_reference(
    tmp_path: Path, target: _TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CD_TEST_ABSENT", raising=False)
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    async with ConnectorsFacade(settings=_settings(tmp_path, secret_ref_env=["CD_TEST_*"])) as facade:
        _, result = await _register_and_test(facade, url, "env:CD_TEST_ABSENT")
        assert (result.success, result.error_kind) == (False, "invalid_config")
        assert result.error == "secret reference env:CD_TEST_ABSENT: the variable is not set"


async def test_references_the_policy_does_not_list_are_refused_at_registration(tmp_path: Path) -> None:
    async with ConnectorsFacade(settings=_settings(tmp_path, secret_ref_env=["CD_TEST_*"])) as facade:
        for token in ("env:HOME", f"file:{tmp_path}/x", "aws-sm:prod/db"):
            with pytest.raises(ValidationError) as caught:
                await _register_and_test(facade, "http://127.0.0.1:9/", token)
            (error,) = caught.value.errors
            assert error.loc == ("config", "auth", "token")
            assert "is not allowed" in error.msg
        assert (await facade.list_connectors_page(TENANT, None, None, 10, None)).items == []


async def test_file_reference_under_the_allowed_folder(tmp_path: Path, target: _TokenServer) -> None:
    folder = tmp_path / "refs" / TENANT
    folder.mkdir(parents=True)
    (folder / "token").write_text(TOKEN + "\n")
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    settings = _settings(tmp_path, secret_ref_dirs=[f"{tmp_path}/refs/{{tenant}}"])
    async with ConnectorsFacade(settings=settings) as facade:
        _, result = await _register_and_test(facade, url, f"file:{folder}/token")
        assert result.success, result.error
        _, missing = await _register_and_test(facade, url, f"file:{folder}/nope", "other")
        assert (missing.error_kind, missing.error) == (
            "invalid_config",
            f"secret reference file:{folder}/nope: no such file",
        )


# --- aws-sm: against moto's server -----------------------------------------------------------


@pytest.fixture(scope="module")
def secrets_manager() -> Iterator[str]:
    import boto3

    server = start_moto(enforce_auth=False)
    try:
        endpoint = server.info["endpoint"]
        sm = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        sm.create_secret(Name=f"cd/{TENANT}/api", SecretString=json.dumps({"token": TOKEN, "n": 1}))
        sm.create_secret(Name=f"cd/{TENANT}/plain", SecretString=TOKEN)
        yield endpoint
    finally:
        server.stop()


async def test_aws_secrets_manager_reference_with_and_without_a_json_key(
    tmp_path: Path, target: _TokenServer, secrets_manager: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    settings = _settings(
        tmp_path,
        secret_ref_aws_sm=["cd/{tenant}/*"],
        secret_ref_aws_endpoint_url=secrets_manager,
        secret_ref_aws_region=REGION,
    )
    async with ConnectorsFacade(settings=settings) as facade:
        _, keyed = await _register_and_test(facade, url, f"aws-sm:cd/{TENANT}/api#token", "keyed")
        assert keyed.success, keyed.error
        _, plain = await _register_and_test(facade, url, f"aws-sm:cd/{TENANT}/plain", "plain")
        assert plain.success, plain.error
        _, no_key = await _register_and_test(facade, url, f"aws-sm:cd/{TENANT}/api#nope", "nokey")
        assert (
            no_key.error == f"secret reference aws-sm:cd/{TENANT}/api#nope: the secret has no JSON key 'nope'"
        )
        _, absent = await _register_and_test(facade, url, f"aws-sm:cd/{TENANT}/gone", "gone")
        assert absent.error_kind == "invalid_config"
        assert "ResourceNotFoundException" in (absent.error or "")
        assert TOKEN not in _everything_shown(facade, keyed, plain, no_key, absent)


async def test_a_resolved_value_is_kept_for_the_ttl_then_read_again(
    tmp_path: Path, target: _TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CD_TEST_TOKEN", TOKEN)
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    settings = _settings(tmp_path, secret_ref_env=["CD_TEST_*"]).model_copy(update={"secret_ref_ttl": 300})
    async with ConnectorsFacade(settings=settings) as facade:
        info, first = await _register_and_test(facade, url, "env:CD_TEST_TOKEN")
        monkeypatch.setenv("CD_TEST_TOKEN", "rotated")
        cached = await facade.test_connector(info.id, TENANT)
        assert (first.success, cached.success) == (True, True)
        facade.runner.references.ttl = 0
        fresh = await facade.test_connector(info.id, TENANT)
        assert fresh.error_kind == "auth"
