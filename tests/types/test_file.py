"""The file probe against moto's S3 server and local folders under configured roots.

S3: ``moto_server`` on loopback with IAM authentication turned on after set-up
(``peers_file.start_moto``), so wrong credentials get moto's real
``InvalidAccessKeyId`` / ``SignatureDoesNotMatch`` answers. ``gs://`` and
``az://`` need gcsfs and adlfs, which are not installed: the probe must name
the missing package.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.model import ErrorKind
from connectord.network.egress import EgressPolicy
from connectord.plugin import ProbeError
from connectord.settings import Settings
from connectord.types.file import (
    PROBE_PREFIX,
    FileConfig,
    FileType,
    botocore_error_kind,
    map_botocore_error,
    map_os_error,
    s3_location,
)
from connectord.types.serverless import EgressResolver
from tests.types.harness import LOOPBACK, ProbeHarness, black_hole_listener
from tests.types.peers_file import BUCKET, PREFIX, REGION, client, shared_moto, stop_shared_moto
from tests.types.peers_vector import BlackHole, ServerProcess, StubVectorApi, free_port

PROBE = FileType()
HARNESS = ProbeHarness(PROBE)
context, probe, failure = HARNESS.context, HARNESS.probe, HARNESS.failure


@pytest.fixture(scope="session")
def moto() -> Iterator[ServerProcess]:
    """moto's server with IAM authentication enforced."""
    yield shared_moto(enforce_auth=True)
    stop_shared_moto()


@pytest.fixture(scope="session")
def moto_open() -> Iterator[ServerProcess]:
    """moto's server without authentication (any credentials, or none, pass)."""
    yield shared_moto(enforce_auth=False)
    stop_shared_moto()


black_hole = pytest.fixture(scope="session")(black_hole_listener)


def s3_config(server: ServerProcess, **overrides: Any) -> dict[str, Any]:
    return {
        "endpoint_url": server.info["endpoint"],
        "region": REGION,
        "access_key_id": server.info["access_key_id"],
        "secret_access_key": server.info["secret_access_key"],
        **overrides,
    }


def probe_objects(server: ServerProcess) -> list[str]:
    listing = client(server, "s3").list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in listing.get("Contents", []) if PROBE_PREFIX in o["Key"]]


# --- S3 ------------------------------------------------------------------------------


async def test_s3_lists_the_prefix_by_count(moto: ServerProcess) -> None:
    details = (await PROBE.probe(context(f"s3://{BUCKET}/{PREFIX}", **s3_config(moto)))).details
    assert details["protocol"] == "s3"
    assert details["entries"] == 3  # a.csv, b.csv and the 2026/ folder
    assert details["entries_truncated"] is False
    assert "a.csv" not in json.dumps(details)  # a count, never the names
    assert "write_ok" not in details
    assert {"resolve_ms", "list_ms"} <= set(details["phases"])


async def test_s3_bucket_root_and_named_endpoint(moto: ServerProcess) -> None:
    """A host name in endpoint_url is resolved by the egress resolver, not by botocore."""
    named = moto.info["endpoint"].replace("127.0.0.1", "localhost")
    details = (await PROBE.probe(context(f"s3://{BUCKET}", **s3_config(moto, endpoint_url=named)))).details
    assert details["entries"] == 2  # top.txt and reports/


async def test_s3_write_check_writes_and_deletes(moto: ServerProcess) -> None:
    ctx = context(f"s3://{BUCKET}/{PREFIX}/", **s3_config(moto, write_check=True))
    details = (await PROBE.probe(ctx)).details
    assert details["write_ok"] is True
    assert "write_ms" in details["phases"]
    assert probe_objects(moto) == []


async def test_s3_write_check_skipped_when_read_only(moto: ServerProcess) -> None:
    ctx = context(f"s3://{BUCKET}/{PREFIX}", **s3_config(moto, write_check=True, read_only=True))
    details = (await PROBE.probe(ctx)).details
    assert "write_ok" not in details
    assert details["write_check"].startswith("skipped")
    assert PROBE.capabilities(ctx.config) == ["read"]


@pytest.mark.parametrize("wrong", ["access_key_id", "secret_access_key"])
async def test_s3_wrong_credentials_are_auth(
    moto: ServerProcess, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = f"AKIA{secrets.token_hex(8).upper()}"
    error = await failure(context(f"s3://{BUCKET}/{PREFIX}", **s3_config(moto, **{wrong: bad})))
    assert error.kind is ErrorKind.AUTH, error.message
    for secret in (moto.info["secret_access_key"], bad if wrong == "secret_access_key" else None):
        if secret:
            assert secret not in error.message
            assert secret not in caplog.text


async def test_s3_anonymous_never_uses_the_servers_credentials(
    moto_open: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without keys the requests go unsigned; botocore's credential chain (here a container
    credentials URL on a loopback stub that counts requests) is never consulted."""
    witness = StubVectorApi("qdrant", "unused")
    try:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{witness.port}/creds")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        config = {"endpoint_url": moto_open.info["endpoint"], "region": REGION}
        details = (await PROBE.probe(context(f"s3://{BUCKET}/{PREFIX}", **config))).details
    finally:
        witness.stop()
    assert details["anonymous"] is True
    assert details["entries"] == 3
    assert witness.requests == []


async def test_s3_missing_bucket_is_not_found(moto: ServerProcess) -> None:
    error = await failure(context("s3://no-such-bucket/x", **s3_config(moto)))
    assert error.kind is ErrorKind.NOT_FOUND
    assert "NoSuchBucket" in error.message


async def test_s3_closed_port_is_refused_quickly(moto: ServerProcess) -> None:
    start = time.monotonic()
    ctx = context(f"s3://{BUCKET}", **s3_config(moto, endpoint_url=f"http://127.0.0.1:{free_port()}"))
    assert (await failure(ctx)).kind is ErrorKind.REFUSED
    assert time.monotonic() - start < 2


async def test_s3_black_hole_times_out_within_bound(moto: ServerProcess, black_hole: BlackHole) -> None:
    start = time.monotonic()
    config = s3_config(moto, endpoint_url=f"http://127.0.0.1:{black_hole.port}")
    error = await failure(context(f"s3://{BUCKET}", timeout=1.0, **config))
    assert error.kind is ErrorKind.TIMEOUT, error.message
    assert time.monotonic() - start < 1.0 + 2


async def test_s3_egress_denied(moto: ServerProcess) -> None:
    error = await failure(context(f"s3://{BUCKET}", allow=False, **s3_config(moto)))
    assert error.kind is ErrorKind.EGRESS_DENIED


def test_s3_location() -> None:
    assert s3_location("s3://b/a/b/") == ("b", "a/b/")
    assert s3_location("s3://b") == ("b", "")
    with pytest.raises(ProbeError):
        s3_location("s3:///nobucket")


@pytest.mark.parametrize(("endpoint", "package"), [("gs://bucket/x", "gcsfs"), ("az://container/x", "adlfs")])
async def test_cloud_protocols_name_the_missing_package(endpoint: str, package: str) -> None:
    error = await failure(context(endpoint))
    assert error.kind is ErrorKind.UNSUPPORTED
    assert f"pip install {package}" in error.message


# --- local folders -------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (folder / "data" / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt"):
        (folder / "data" / name).write_text(name)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("x")
    return folder


async def test_local_folder_counts_entries(root: Path) -> None:
    details = (await PROBE.probe(context(f"file://{root}/data", roots=(str(root),)))).details
    assert (details["protocol"], details["entries"], details["entries_truncated"]) == ("file", 3, False)


async def test_local_write_check_writes_and_deletes(root: Path) -> None:
    ctx = context(f"file://{root}/data", roots=(str(root),), write_check=True)
    details = (await PROBE.probe(ctx)).details
    assert details["write_ok"] is True
    assert sorted(os.listdir(root / "data")) == ["a.txt", "b.txt", "sub"]


@pytest.mark.parametrize("path", ["{root}/../outside", "{root}/data/../../outside", "{root}/link"])
async def test_local_escapes_are_refused(root: Path, path: str) -> None:
    (root / "link").symlink_to(root.parent / "outside")
    error = await failure(context("file://" + path.format(root=root), roots=(str(root),)))
    assert error.kind is ErrorKind.EGRESS_DENIED
    assert "file roots" in error.message


async def test_local_without_roots_is_refused(root: Path) -> None:
    error = await failure(context(f"file://{root}/data"))
    assert error.kind is ErrorKind.EGRESS_DENIED
    assert "CONNECTORD_FILE_ROOTS" in error.message


@pytest.mark.parametrize(
    ("path", "kind"), [("data/none", ErrorKind.NOT_FOUND), ("data/a.txt", ErrorKind.INVALID_CONFIG)]
)
async def test_local_missing_or_not_a_folder(root: Path, path: str, kind: ErrorKind) -> None:
    assert (await failure(context(f"file://{root}/{path}", roots=(str(root),)))).kind is kind


def test_os_error_mapping() -> None:
    assert map_os_error(PermissionError(errno.EACCES, "denied")).kind is ErrorKind.AUTH
    assert map_os_error(OSError(errno.EIO, "io")).kind is ErrorKind.UNAVAILABLE


# --- shared AWS plumbing -------------------------------------------------------------


def test_botocore_error_mapping_covers_every_exception_class() -> None:
    from botocore import exceptions as bc

    classes = [
        c
        for c in vars(bc).values()
        if isinstance(c, type) and issubclass(c, bc.BotoCoreError | bc.ClientError)
    ]
    assert len(classes) > 50
    for cls in classes:
        assert botocore_error_kind(cls) is not None, cls


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InvalidAccessKeyId", 403, ErrorKind.AUTH),
        ("SignatureDoesNotMatch", 403, ErrorKind.AUTH),
        ("AccessDenied", 403, ErrorKind.AUTH),
        ("403", 403, ErrorKind.AUTH),
        ("NoSuchBucket", 404, ErrorKind.NOT_FOUND),
        ("ResourceNotFoundException", 404, ErrorKind.NOT_FOUND),
        ("SlowDown", 503, ErrorKind.UNAVAILABLE),
        ("InternalError", 500, ErrorKind.UNEXPECTED_STATUS),
    ],
)
def test_client_errors_by_code(code: str, status: int, kind: ErrorKind) -> None:
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    assert map_botocore_error(error, "S3").kind is kind
    translated = PermissionError("s3fs's translation")  # s3fs raises OSError caused by the ClientError
    translated.__cause__ = error
    assert map_botocore_error(translated, "S3").kind is kind


def test_error_chains_with_cycles_end() -> None:
    error = OSError("loop")
    error.__cause__ = error
    assert map_botocore_error(error, "S3").kind is ErrorKind.UNAVAILABLE
    assert map_os_error(error).kind is ErrorKind.UNAVAILABLE


async def test_egress_resolver_checks_every_name() -> None:
    resolver = EgressResolver(EgressPolicy(LOOPBACK))
    found = await resolver.resolve("localhost", 80)
    assert {r["host"] for r in found} <= {"127.0.0.1", "::1"}
    assert all(r["hostname"] == "localhost" for r in found)
    denying = EgressResolver(EgressPolicy([]))
    with pytest.raises(OSError, match="egress"):
        await denying.resolve("localhost", 80, socket.AF_INET)
    assert denying.refusal is not None
    assert denying.refusal.kind is ErrorKind.EGRESS_DENIED


# --- config and facade ---------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [{"password": "p"}, {"access_key_id": "a"}, {"secret_access_key": "s"}, {"session_token": "t"}],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        FileConfig.model_validate(config)


def test_schema_marks_secrets() -> None:
    props = FileConfig.model_json_schema()["properties"]
    for name in ("secret_access_key", "session_token"):
        assert any(option.get("writeOnly") for option in props[name]["anyOf"])
    assert all("description" in spec for spec in props.values())


@pytest.fixture
async def loop_facade(tmp_path: Path, root: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    settings = Settings(data_dir=tmp_path / "store", egress_allow=LOOPBACK, file_roots=[root])
    async with ConnectorsFacade(settings=settings) as facade:
        record, _ = await Admin(facade).create_tenant(f"file-{secrets.token_hex(4)}")
        yield facade, record.id


async def test_facade_s3_with_write_check(
    loop_facade: tuple[ConnectorsFacade, str], moto: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    config = s3_config(moto, write_check=True)
    info = await facade.register_connector(tenant, "s3", "file", f"s3://{BUCKET}/{PREFIX}", config)
    assert sorted(info.secret_fields) == ["secret_access_key"]
    result = await facade.test_connector(info.id, tenant)
    assert result.success, result.error
    assert result.details["write_ok"] is True
    assert probe_objects(moto) == []
    secret = moto.info["secret_access_key"]
    assert secret not in json.dumps(result.to_dict()) + json.dumps(info.to_dict()) + caplog.text


async def test_facade_s3_wrong_secret_is_auth(
    loop_facade: tuple[ConnectorsFacade, str], moto: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    wrong = f"Wrong{secrets.token_hex(12)}"
    config = s3_config(moto, secret_access_key=wrong)
    info = await facade.register_connector(tenant, "s3bad", "file", f"s3://{BUCKET}", config)
    result = await facade.test_connector(info.id, tenant)
    assert result.error_kind == "auth"
    assert wrong not in json.dumps(result.to_dict()) + caplog.text


async def test_facade_session_token_never_logged(
    loop_facade: tuple[ConnectorsFacade, str], moto: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """botocore logs request headers at DEBUG; the session token must not reach the logs."""
    caplog.set_level(logging.DEBUG)
    facade, tenant = loop_facade
    token = f"Token{secrets.token_hex(16)}"
    config = s3_config(moto, session_token=token)
    info = await facade.register_connector(tenant, "s3tok", "file", f"s3://{BUCKET}", config)
    result = await facade.test_connector(info.id, tenant)
    assert token not in json.dumps(result.to_dict()) + caplog.text


async def test_facade_local_folder_and_escape(loop_facade: tuple[ConnectorsFacade, str], root: Path) -> None:
    facade, tenant = loop_facade
    good = await facade.register_connector(tenant, "local", "file", f"file://{root}/data")
    result = await facade.test_connector(good.id, tenant)
    assert result.success, result.error
    assert result.details["entries"] == 3
    escape = await facade.register_connector(tenant, "escape", "file", f"file://{root}/../outside")
    refused = await facade.test_connector(escape.id, tenant)
    assert refused.error_kind == "egress_denied"
