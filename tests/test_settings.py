"""Settings: ``CONNECTORD_*`` variables, and the unsafe combinations refused at start."""

from __future__ import annotations

import base64
import ipaddress
import os
from pathlib import Path

import pydantic
import pytest

import connectord.facade as facade_module
from connectord import ConfigurationError, ConnectorsFacade, Settings, get_connectors_facade
from connectord.secrets import KEY_FILE_NAME, generate_key


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``CONNECTORD_*`` variable of the machine leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("CONNECTORD_"):
            monkeypatch.delenv(name)


def test_postgres_without_a_secret_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/never_connected"
    with pytest.raises(ConfigurationError) as caught:
        ConnectorsFacade(settings=Settings(data_dir=tmp_path, database_url=url))
    assert "CONNECTORD_SECRET_KEY" in caught.value.message
    assert not (tmp_path / KEY_FILE_NAME).exists()  # no silent fallback to a local key file

    monkeypatch.setenv("CONNECTORD_DATABASE_URL", url)
    monkeypatch.setenv("CONNECTORD_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError):
        ConnectorsFacade()


def test_postgres_with_a_secret_key_uses_the_env_ring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTORD_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/never_connected")
    monkeypatch.setenv("CONNECTORD_SECRET_KEY", base64.b64encode(generate_key()).decode())
    monkeypatch.setenv("CONNECTORD_DATA_DIR", str(tmp_path))
    facade = ConnectorsFacade()  # constructing connects to nothing
    assert facade.settings.uses_postgres
    assert facade.keyring.path is None
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_csv_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONNECTORD_EGRESS_ALLOW", " 10.0.0.0/8, ::1/128 ,,127.0.0.1 ")
    monkeypatch.setenv("CONNECTORD_FILE_ROOTS", f"{tmp_path}/a,{tmp_path}/b")
    settings = Settings()
    assert settings.egress_allow == ["10.0.0.0/8", "::1/128", "127.0.0.1"]
    assert settings.file_roots == [tmp_path / "a", tmp_path / "b"]
    policy = ConnectorsFacade(settings=settings.model_copy(update={"data_dir": tmp_path})).egress
    assert policy.denial(ipaddress.ip_address("10.1.2.3")) is None
    assert policy.denial(ipaddress.ip_address("::1")) is None
    assert policy.denial(ipaddress.ip_address("127.0.0.2")) is not None  # a bare address is a /32
    assert policy.denial(ipaddress.ip_address("192.168.1.1")) is not None


def test_empty_csv_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTORD_EGRESS_ALLOW", "")
    assert Settings().egress_allow == []


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "localhost", "10.0.0.0/8,nope", "::1/129"])
def test_a_bad_cidr_is_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CONNECTORD_EGRESS_ALLOW", bad)
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    assert "not a CIDR" in str(caught.value)


def test_probe_timeout_above_the_maximum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        ConnectorsFacade(settings=Settings(data_dir=tmp_path, probe_timeout=90, probe_timeout_max=60))
    for bad in ({"probe_timeout": 0}, {"port": 70000}, {"workers": 0}, {"log_format": "xml"}):
        with pytest.raises(pydantic.ValidationError):
            Settings(data_dir=tmp_path, **bad)  # type: ignore[arg-type]


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = Settings()
    assert settings.data_dir == tmp_path / "connectord"
    assert settings.sqlite_path == tmp_path / "connectord" / "connectord.db"
    assert not settings.uses_postgres
    assert settings.secret_key is None
    assert settings.egress_allow == []
    assert settings.probe_timeout == 10.0
    assert settings.host == "127.0.0.1"


def test_secret_settings_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(generate_key()).decode()
    monkeypatch.setenv("CONNECTORD_SECRET_KEY", key)
    monkeypatch.setenv("CONNECTORD_DATABASE_URL", "postgresql://app:db-pass-xyz@127.0.0.1/app")
    settings = Settings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert key not in text
        assert "db-pass-xyz" not in text


async def test_get_connectors_facade_is_built_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(facade_module, "_facade", None)
    monkeypatch.setenv("CONNECTORD_DATA_DIR", str(tmp_path))
    facade = get_connectors_facade()
    try:
        assert get_connectors_facade() is facade
        assert facade.settings.data_dir == tmp_path
        async with facade:
            assert (tmp_path / "connectord.db").exists()
            assert (tmp_path / KEY_FILE_NAME).exists()
    finally:
        await facade.aclose()
