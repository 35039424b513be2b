"""Secrets: write-only, encrypted at rest, bound to their row, never leaked; rotation."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import stat
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from connectord import (
    ConfigurationError,
    ConnectorsFacade,
    DuplicateNameError,
    SecretsError,
    Settings,
    ValidationError,
    VersionConflictError,
)
from connectord.admin import Admin
from connectord.network.egress import EgressPolicy
from connectord.redaction import scrub_text
from connectord.secrets import (
    KEY_FILE_NAME,
    Ciphertext,
    KeyRing,
    generate_key,
    leaf_values,
    overlay,
    secret_paths,
    split_secrets,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import RawSql, VaultType


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _open(facade: ConnectorsFacade, tenant: str, connector_id: str) -> dict[str, Any]:
    """Decrypt a connector's stored secrets the way the facade does."""
    sealed = await facade.store.get_secret(tenant, connector_id)
    return facade.keyring.open_tree(sealed, tenant, connector_id) if sealed is not None else {}


# --- leaks --------------------------------------------------------------------------


async def test_a_secret_never_appears_in_any_output(
    facade: ConnectorsFacade,
    tenant: str,
    vault: VaultType,
    secret_value: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    raw_sql: RawSql,
) -> None:
    caplog.set_level(logging.DEBUG)
    facade.egress = EgressPolicy(["127.0.0.0/8"])  # let the custom probe reach the closed port
    seen: list[str] = []

    def out(*objects: object) -> None:
        for obj in objects:
            seen.extend([repr(obj), str(obj)])
            to_dict = getattr(obj, "to_dict", None)
            if to_dict is not None:
                seen.append(repr(to_dict()))

    full = {
        "password": f"{secret_value}-top",
        "auth": {"kind": "basic", "username": "svc", "password": f"{secret_value}-basic"},
        "headers": {"X-Api-Key": f"{secret_value}-hdr"},
        "region": "eu-1",
    }
    vaulted = await facade.register_connector(tenant, "v", "vault", config=full)
    url = await facade.register_connector(
        tenant, "u", "custom", endpoint=f"tcp://svc:{secret_value}-url@127.0.0.1:{_closed_port()}"
    )
    out(
        vaulted,
        url,
        await facade.get_connector(vaulted.id, tenant),
        await facade.get_connector(url.id, tenant),
    )
    out(*(await facade.list_connectors(tenant)), await facade.list_connectors_page(tenant))
    out(await facade.update_connector(vaulted.id, tenant, config={"region": "eu-2", "ok": False}))
    out(await facade.update_connector(url.id, tenant, metadata={"m": 1}))

    failed_vault = await facade.test_connector(vaulted.id, tenant)  # the probe's message names the secrets
    failed_url = await facade.test_connector(url.id, tenant)
    assert failed_vault.error_kind == "auth"
    assert failed_url.error_kind == "refused"
    assert "[redacted]" in (failed_vault.error or "")
    out(
        failed_vault,
        failed_url,
        await facade.test_definition(tenant, "d", "vault", config={**full, "ok": False}),
    )
    await facade.update_connector(vaulted.id, tenant, config={"boom": True})
    out(await facade.test_connector(vaulted.id, tenant))  # a crashing probe: logged, redacted
    out(await facade.history(vaulted.id, tenant), await facade.history(url.id, tenant))
    out(*(await facade.audit(tenant, limit=1000)).items)

    failures: list[BaseException] = []
    for attempt in (
        lambda: facade.register_connector(tenant, "v", "vault", config=full),  # duplicate name
        lambda: facade.register_connector(tenant, "x", "vault", config={**full, "sleep": "no"}),
        lambda: facade.register_connector(tenant, "x", "vault", config={"password": [secret_value]}),
        lambda: facade.register_connector(
            tenant,
            "x",
            "vault",
            config={"auth": {"kind": "bearer", "token": secret_value, "x": secret_value}},
        ),
        lambda: facade.register_connector(tenant, "y", "custom", endpoint=f"http://u:{secret_value}@h:bad/"),
        lambda: facade.update_connector(
            vaulted.id, tenant, config={"password": secret_value}, expected_version=1
        ),
    ):
        with pytest.raises((DuplicateNameError, ValidationError, VersionConflictError)) as caught:
            await attempt()
        failures.append(caught.value)
    for exc in failures:
        out(exc, getattr(exc, "errors", None))
        seen.append("".join(traceback.format_exception(exc)))

    captured = capsys.readouterr()
    seen.extend([caplog.text, captured.out, captured.err])
    seen.extend(repr(record.__dict__) for record in caplog.records)
    assert caplog.records, "logging was captured"
    leaks = [text for text in seen if secret_value in text]
    assert leaks == []

    await _assert_not_stored_in_plaintext(facade, raw_sql, tenant, secret_value)


async def _assert_not_stored_in_plaintext(
    facade: ConnectorsFacade, raw_sql: RawSql, tenant: str, secret_value: str
) -> None:
    settings = facade.settings
    if settings.database_url is None:
        for path in settings.data_dir.iterdir():
            if path.name.startswith("connectord.db"):
                assert secret_value.encode() not in path.read_bytes(), path.name
        return
    for table in ("connectors", "connector_secrets", "test_results", "audit_events"):
        rows = await raw_sql(f"SELECT t::text FROM {table} t WHERE tenant_id = ?", tenant)
        assert rows, table
        assert all(secret_value not in row[0] for row in rows), table


async def test_ciphertext_in_the_database_is_not_the_plaintext(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, secret_value: str, raw_sql: RawSql
) -> None:
    info = await facade.register_connector(tenant, "c", "vault", config={"password": secret_value})
    rows = await raw_sql("SELECT key_id, ciphertext FROM connector_secrets WHERE connector_id = ?", info.id)
    assert len(rows) == 1
    key_id, blob = rows[0]
    assert key_id == facade.keyring.primary_id
    blob = bytes(blob)
    assert secret_value.encode() not in blob
    assert base64.b64encode(secret_value.encode()) not in blob
    assert len(blob) >= len(secret_value) + 12 + 16  # nonce and tag around the sealed JSON
    stored = await raw_sql("SELECT config, secret_fields FROM connectors WHERE id = ?", info.id)
    assert secret_value not in repr(stored)
    assert await _open(facade, tenant, info.id) == {"password": secret_value}


async def test_ciphertext_copied_to_another_row_does_not_decrypt(
    facade: ConnectorsFacade, tenant: str, other_tenant: str, vault: VaultType, raw_sql: RawSql
) -> None:
    a = await facade.register_connector(tenant, "a", "vault", config={"password": "pw-of-a"})
    b = await facade.register_connector(tenant, "b", "vault", config={"password": "pw-of-b"})
    c = await facade.register_connector(other_tenant, "c", "vault", config={"password": "pw-of-c"})
    blob_of_a = await facade.store.get_secret(tenant, a.id)
    assert blob_of_a is not None
    with pytest.raises(SecretsError):
        facade.keyring.open_tree(blob_of_a, tenant, b.id)
    with pytest.raises(SecretsError):
        facade.keyring.open_tree(blob_of_a, other_tenant, a.id)

    for target in (b, c):
        await raw_sql(
            "UPDATE connector_secrets SET key_id = ?, ciphertext = ? WHERE connector_id = ?",
            blob_of_a.key_id,
            blob_of_a.data,
            target.id,
        )
        with pytest.raises(SecretsError) as caught:
            await facade.test_connector(target.id, target.tenant_id)
        assert "pw-of" not in str(caught.value)
    assert vault.seen == []  # no probe ran with a secret it should not have
    assert (await facade.test_connector(a.id, tenant)).success


# --- write-only semantics -------------------------------------------------------------


async def test_url_password_moves_into_the_secret(
    facade: ConnectorsFacade, tenant: str, secret_value: str
) -> None:
    info = await facade.register_connector(
        tenant,
        "pg",
        "custom",
        endpoint=f"postgresql://alice:{secret_value}@db.invalid:5432/app?sslmode=require",
    )
    assert info.endpoint == "postgresql://alice@db.invalid:5432/app?sslmode=require"
    assert info.secret_fields == ["password"]
    assert "password" not in info.config
    assert await _open(facade, tenant, info.id) == {"password": secret_value}

    no_user = await facade.register_connector(
        tenant, "r", "custom", endpoint="redis://:hunter2@cache.invalid:6379/0"
    )
    assert no_user.endpoint == "redis://cache.invalid:6379/0"
    assert await _open(facade, tenant, no_user.id) == {"password": "hunter2"}

    encoded = await facade.register_connector(
        tenant, "e", "custom", endpoint="https://bob:p%40ss%3Aw%2Frd@h.invalid/"
    )
    assert encoded.endpoint == "https://bob@h.invalid/"
    assert await _open(facade, tenant, encoded.id) == {"password": "p@ss:w/rd"}

    explicit = await facade.register_connector(
        tenant, "x", "custom", endpoint="https://bob:from-url@h.invalid/", config={"password": "from-config"}
    )
    assert explicit.endpoint == "https://bob@h.invalid/"
    assert await _open(facade, tenant, explicit.id) == {"password": "from-config"}

    moved = await facade.update_connector(
        info.id, tenant, endpoint="postgresql://alice:new-pw@db.invalid:5432/app"
    )
    assert moved is not None
    assert moved.endpoint == "postgresql://alice@db.invalid:5432/app"
    assert await _open(facade, tenant, info.id) == {"password": "new-pw"}


async def test_update_keeps_omitted_secrets_and_removes_nulled_ones(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, secret_value: str
) -> None:
    info = await facade.register_connector(
        tenant,
        "v",
        "vault",
        config={
            "password": secret_value,
            "auth": {"kind": "basic", "username": "svc", "password": "basic-pw"},
            "headers": {"X-A": "a-key", "X-B": "b-key"},
            "region": "eu",
        },
    )
    assert info.secret_fields == ["auth.password", "headers.X-A", "headers.X-B", "password"]
    assert info.config == {"auth": {"kind": "basic", "username": "svc"}, "headers": {}, "region": "eu"}

    kept = await facade.update_connector(
        info.id, tenant, config={"region": "us", "auth": {"kind": "basic", "username": "ops"}}
    )
    assert kept is not None
    assert kept.secret_fields == info.secret_fields
    assert kept.config["auth"] == {"kind": "basic", "username": "ops"}
    await facade.test_connector(info.id, tenant)
    seen = vault.seen[-1]
    assert seen.password is not None
    assert seen.password.get_secret_value() == secret_value
    assert seen.auth is not None
    assert seen.auth.kind == "basic"
    assert seen.auth.password.get_secret_value() == "basic-pw"  # type: ignore[union-attr]
    assert {k: v.get_secret_value() for k, v in seen.headers.items()} == {"X-A": "a-key", "X-B": "b-key"}

    auth = {"kind": "basic", "username": "ops"}
    changed = await facade.update_connector(info.id, tenant, config={"password": "rotated-pw", "auth": auth})
    assert changed is not None
    assert changed.secret_fields == info.secret_fields
    assert (await _open(facade, tenant, info.id))["password"] == "rotated-pw"

    dropped = await facade.update_connector(
        info.id, tenant, config={"password": None, "headers": {"X-A": None}, "auth": auth}
    )
    assert dropped is not None
    assert dropped.secret_fields == ["auth.password", "headers.X-B"]
    assert await _open(facade, tenant, info.id) == {
        "auth": {"password": "basic-pw"},
        "headers": {"X-B": "b-key"},
    }

    # A config without ``auth`` removes the auth object, and its secrets go with it;
    # secrets that stand on their own (the headers) are kept.
    no_auth = await facade.update_connector(info.id, tenant, config={"region": "ap"})
    assert no_auth is not None
    assert no_auth.secret_fields == ["headers.X-B"]
    assert no_auth.config == {"region": "ap", "headers": {}}

    emptied = await facade.update_connector(info.id, tenant, config={"headers": None})
    assert emptied is not None
    assert emptied.secret_fields == []
    assert await facade.store.get_secret(tenant, info.id) is None


async def test_stale_secrets_are_dropped_when_the_config_shape_changes(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(
        tenant, "v", "vault", config={"auth": {"kind": "basic", "username": "u", "password": "old-pw"}}
    )
    bearer = await facade.update_connector(
        info.id, tenant, config={"auth": {"kind": "bearer", "token": "tok"}}
    )
    assert bearer is not None
    assert bearer.secret_fields == ["auth.token"]
    assert bearer.config == {"auth": {"kind": "bearer"}}
    assert await _open(facade, tenant, info.id) == {"auth": {"token": "tok"}}

    # Back to basic without a password: the token is stale, the password is required.
    with pytest.raises(ValidationError) as caught:
        await facade.update_connector(info.id, tenant, config={"auth": {"kind": "basic", "username": "u"}})
    assert [e.loc for e in caught.value.errors] == [("config", "auth", "basic", "password")]
    assert await _open(facade, tenant, info.id) == {"auth": {"token": "tok"}}


async def test_secret_fields_name_secrets_only(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, secret_value: str
) -> None:
    info = await facade.register_connector(
        tenant, "v", "vault", config={"headers": {"Authorization": secret_value}}
    )
    assert info.secret_fields == ["headers.Authorization"]
    assert secret_value not in repr(info.to_dict())
    none = await facade.register_connector(tenant, "n", "vault", config={"region": "eu"})
    assert none.secret_fields == []
    assert await facade.store.get_secret(tenant, none.id) is None


async def test_a_test_sees_the_secrets_after_a_restart(
    settings: Settings, vault_type: type[VaultType]
) -> None:
    async with ConnectorsFacade(settings=settings) as first:
        first.registry.register(vault_type())
        tenant, _ = await Admin(first).create_tenant(f"s-{secrets.token_hex(4)}")
        info = await first.register_connector(tenant.id, "v", "vault", config={"password": "survives"})
    async with ConnectorsFacade(settings=settings) as second:
        probe = vault_type()
        second.registry.register(probe)
        assert (await second.test_connector(info.id, tenant.id)).success
        assert probe.seen[0].password is not None
        assert probe.seen[0].password.get_secret_value() == "survives"


# --- key ring -----------------------------------------------------------------------


def test_key_file_is_created_private(tmp_path: Path) -> None:
    previous = os.umask(0)  # even a permissive umask must not widen the file's mode
    try:
        ring = KeyRing.load_or_create_file(tmp_path / "fresh")
    finally:
        os.umask(previous)
    path = tmp_path / "fresh" / KEY_FILE_NAME
    assert ring.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.load_or_create_file(tmp_path / "fresh").key_ids == ring.key_ids  # reused, not replaced


def test_a_readable_key_file_is_refused(tmp_path: Path) -> None:
    KeyRing.load_or_create_file(tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(ConfigurationError) as caught:
        ConnectorsFacade(settings=Settings(data_dir=tmp_path))
    assert "chmod 600" in caught.value.message


def test_env_key_ring_format() -> None:
    old, new = generate_key(), generate_key()
    value = f" 2025-01:{base64.b64encode(old).decode()} ,, {base64.b64encode(new).decode()} "
    ring = KeyRing.from_env_value(value)
    assert len(ring.key_ids) == 2
    assert ring.primary_id == KeyRing([new]).primary_id  # newest last seals; labels are ignored
    assert ring.path is None
    sealed = KeyRing([old]).seal_tree({"p": "v"}, "t", "c")
    assert ring.open_tree(sealed, "t", "c") == {"p": "v"}  # older keys still open
    assert ring.seal_tree({"p": "v"}, "t", "c").key_id == ring.primary_id

    for bad in ("not base64!", base64.b64encode(b"short").decode(), "", " , "):
        with pytest.raises(ConfigurationError):
            KeyRing.from_env_value(bad)


def test_env_keys_may_be_url_safe_or_unpadded() -> None:
    key = bytes(range(224, 256))  # its base64 has both + and / in it
    standard = base64.b64encode(key).decode()
    url_safe = base64.urlsafe_b64encode(key).decode()
    assert {"+", "/"} <= set(standard)
    assert {"-", "_"} <= set(url_safe)
    expected = KeyRing([key]).primary_id
    for spelling in (standard, url_safe, url_safe.rstrip("="), standard.rstrip("="), f"label:{url_safe}"):
        assert KeyRing.from_env_value(spelling).primary_id == expected, spelling
    mixed = standard.replace("/", "_", 1)  # one key, two alphabets: a typo, not a key
    for bad in (mixed, url_safe + "!", "=" + url_safe):
        with pytest.raises(ConfigurationError):
            KeyRing.from_env_value(bad)


def test_unknown_key_id_and_tampering_are_secrets_errors() -> None:
    ring = KeyRing([generate_key()])
    sealed = ring.seal_tree({"p": "v"}, "t", "c")
    with pytest.raises(SecretsError):
        KeyRing([generate_key()]).open_tree(sealed, "t", "c")
    flipped = bytes([sealed.data[0], *sealed.data[1:-1], sealed.data[-1] ^ 1])
    with pytest.raises(SecretsError):
        ring.open_tree(Ciphertext(sealed.key_id, flipped), "t", "c")
    assert ring.seal_tree({"p": "v"}, "t", "c").data != sealed.data  # fresh nonce each time


def test_secret_tree_helpers() -> None:
    public, tree = split_secrets(
        {"a": 1, "password": SecretStr("pw"), "auth": {"kind": "x", "token": SecretStr("tk")}, "h": {}}
    )
    assert public == {"a": 1, "auth": {"kind": "x"}, "h": {}}
    assert tree == {"password": "pw", "auth": {"token": "tk"}}
    assert secret_paths(tree) == ["auth.token", "password"]
    assert sorted(leaf_values(tree)) == ["pw", "tk"]
    assert overlay({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": None}, "d": None, "e": None}) == {
        "a": {"c": 2},
        "e": None,
    }
    assert scrub_text("user pw-long and pw-longer; ab", ["pw-long", "pw-longer", "ab"]) == (
        "user [redacted] and [redacted]; ab"
    )


# --- rotation -----------------------------------------------------------------------


async def _fill(facade: ConnectorsFacade, vault_type: type[VaultType]) -> dict[str, tuple[str, str]]:
    """Two tenants with secrets (and one connector without), and a library tenant id with no
    tenant record (its secrets are rotated too); ``{connector id: (tenant, password)}``."""
    facade.registry.register(vault_type())
    admin = Admin(facade)
    made: dict[str, tuple[str, str]] = {}
    for t in range(2):
        tenant, _ = await admin.create_tenant(f"rot-{t}-{secrets.token_hex(3)}")
        for i in range(3):
            password = f"pw-{t}-{i}-{secrets.token_hex(3)}"
            info = await facade.register_connector(tenant.id, f"c{i}", "vault", config={"password": password})
            made[info.id] = (tenant.id, password)
        await facade.register_connector(tenant.id, "plain", "vault")
    library = f"library-{secrets.token_hex(3)}"
    info = await facade.register_connector(library, "c0", "vault", config={"password": f"pw-lib-{library}"})
    made[info.id] = (library, f"pw-lib-{library}")
    return made


async def _assert_readable(facade: ConnectorsFacade, made: dict[str, tuple[str, str]]) -> None:
    for connector_id, (tenant, password) in made.items():
        assert await _open(facade, tenant, connector_id) == {"password": password}


async def test_rotation_with_the_key_file(tmp_path: Path, vault_type: type[VaultType]) -> None:
    settings = Settings(data_dir=tmp_path)
    key_file = tmp_path / KEY_FILE_NAME
    async with ConnectorsFacade(settings=settings) as facade:
        old_id = facade.keyring.primary_id
        made = await _fill(facade, vault_type)
        report = await Admin(facade).rotate_secrets(new_key=True)
        assert report.primary_key_id != old_id
        assert report.primary_key_id == facade.keyring.primary_id
        assert report.reencrypted == len(made)
        assert report.unused_key_ids == [old_id]
        assert report.dropped_key_ids == [old_id]
        assert facade.keyring.key_ids == [report.primary_key_id]
        assert len(key_file.read_text().split()) == 1
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert await facade.store.secret_key_usage() == {report.primary_key_id: len(made)}
        await _assert_readable(facade, made)
        events = [e for t in {t for t, _ in made.values()} for e in (await facade.audit(t)).items]
        assert sorted(e.details["reencrypted"] for e in events if e.action == "secrets.rotate") == [1, 3, 3]

        again = await Admin(facade).rotate_secrets()
        assert (again.reencrypted, again.unused_key_ids, again.dropped_key_ids) == (0, [], [])

    async with ConnectorsFacade(settings=settings) as reopened:  # the file alone opens everything
        assert reopened.keyring.key_ids == [report.primary_key_id]
        await _assert_readable(reopened, made)


async def test_rotation_with_an_env_key_ring(
    isolated_settings: Settings, vault_type: type[VaultType], raw_sql_factory: Callable[[Settings], RawSql]
) -> None:
    old = base64.b64encode(generate_key()).decode()
    new = base64.b64encode(generate_key()).decode()

    def with_ring(value: str) -> Settings:
        return isolated_settings.model_copy(update={"secret_key": SecretStr(value)})

    async with ConnectorsFacade(settings=with_ring(old)) as first:
        made = await _fill(first, vault_type)
        old_id = first.keyring.primary_id

    async with ConnectorsFacade(settings=with_ring(f"2025:{old},2026:{new}")) as both:
        with pytest.raises(ValidationError):
            await Admin(both).rotate_secrets(new_key=True)  # an env ring is changed by its operator
        report = await Admin(both).rotate_secrets()
        assert report.reencrypted == len(made)
        assert report.primary_key_id != old_id
        assert report.unused_key_ids == [old_id]
        assert report.dropped_key_ids == []  # the operator removes it from the variable
        assert both.keyring.key_ids == [old_id, report.primary_key_id]

    rows = await raw_sql_factory(isolated_settings)("SELECT DISTINCT key_id FROM connector_secrets")
    assert rows == [(report.primary_key_id,)]

    async with ConnectorsFacade(settings=with_ring(new)) as only_new:
        await _assert_readable(only_new, made)
        only_new.registry.register(vault_type())
        some_id, (tenant, _) = next(iter(made.items()))
        assert (await only_new.test_connector(some_id, tenant)).success

    async with ConnectorsFacade(settings=with_ring(old)) as only_old:
        some_id, (tenant, _) = next(iter(made.items()))
        with pytest.raises(SecretsError):
            await _open(only_old, tenant, some_id)
