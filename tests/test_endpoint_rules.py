"""Endpoints are checked per type on every path that takes a definition (issue 10.2, 9.7, 9.11),
and secrets never follow a change of destination (issue 9.3).

Refused spellings answer a ValidationError on ``endpoint`` naming what the type
accepts, on register, update, the unsaved-definition test and ``apply``; the
store is unchanged. The REST routes answer 422 with the field.
"""

from __future__ import annotations

from typing import Any

import pytest

from connectord.declarative import parse_document
from connectord.errors import ValidationError
from connectord.facade import ConnectorsFacade
from connectord.types.endpoint import EndpointRule

#: (type, endpoint, config) that must be refused on ``endpoint``.
REFUSED: list[tuple[str, str, dict[str, Any]]] = [
    ("http", "file:///etc/passwd", {}),
    ("http", "gopher://127.0.0.1:70/", {}),
    ("http", "http://", {}),
    ("http", "127.0.0.1:80", {}),
    ("http", "https://tok3n@127.0.0.1/", {}),
    ("http", "https://127.0.0.1/?access_token=abc", {}),
    ("http", "https://127.0.0.1/?page=1&API_KEY=abc", {}),
    ("mcp", "ftp://127.0.0.1/", {}),
    ("mcp", "http://u:p@127.0.0.1/mcp", {}),
    ("mcp", "http://tok3n@127.0.0.1/mcp", {}),
    ("sql", "http://127.0.0.1:5432/db", {}),
    ("sql", "postgresql:///db", {}),
    ("sql", "sqlite://host/x.db", {}),
    ("sql", "sqlite:///tmp/x%00.db", {}),
    ("file", "http://bucket/", {}),
    ("file", "file://host/etc", {}),
    ("file", "file:///root%00", {}),
    ("file", "s3://", {}),
    ("serverless", "ftp://127.0.0.1/", {}),
    ("serverless", "http://u:p@127.0.0.1/", {}),
    ("stream", "http://127.0.0.1:4222", {}),
    ("stream", "nats://", {}),
    ("vector", "ftp://127.0.0.1/", {}),
    ("vector", "http://tok3n@127.0.0.1:8000", {"provider": "chroma"}),
    ("vector", "postgresql://127.0.0.1:5432/db", {"provider": "qdrant"}),
    ("custom", "file:///etc/passwd", {}),
    ("custom", "tcp://", {}),
]

#: (type, endpoint, config, stored endpoint, secret fields) that must be accepted.
ACCEPTED: list[tuple[str, str, dict[str, Any], str, list[str]]] = [
    ("http", "https://127.0.0.1:8443/x?page=1", {}, "https://127.0.0.1:8443/x?page=1", []),
    ("http", "http://u:pw@127.0.0.1/", {}, "http://u@127.0.0.1/", ["password"]),
    (
        "sql",
        "app:p%40ss@127.0.0.1:5432/db",
        {"dialect": "postgresql"},
        "app@127.0.0.1:5432/db",
        ["password"],
    ),
    ("sql", "/tmp/app.db", {"dialect": "sqlite"}, "/tmp/app.db", []),
    ("sql", "sqlite:///tmp/app.db", {}, "sqlite:///tmp/app.db", []),
    ("sql", "postgresql+asyncpg://app@127.0.0.1/db", {}, "postgresql+asyncpg://app@127.0.0.1/db", []),
    ("file", "s3://bucket/prefix", {}, "s3://bucket/prefix", []),
    ("file", "file:///tmp", {}, "file:///tmp", []),
    ("stream", "127.0.0.1:4222", {"protocol": "nats"}, "127.0.0.1:4222", []),
    ("stream", "amqp://guest:guest@127.0.0.1/", {}, "amqp://guest@127.0.0.1/", ["password"]),
    (
        "vector",
        "postgresql://postgres@127.0.0.1:5432/db",
        {"provider": "pgvector"},
        "postgresql://postgres@127.0.0.1:5432/db",
        [],
    ),
    ("vector", "127.0.0.1:6333", {"provider": "qdrant"}, "127.0.0.1:6333", []),
    ("custom", "tcp://u:pw@127.0.0.1:1", {}, "tcp://u@127.0.0.1:1", ["password"]),
]


def _endpoint_error(exc: ValidationError) -> str:
    assert [fe.loc for fe in exc.errors] == [("endpoint",)], exc.errors
    return exc.errors[0].msg


@pytest.mark.parametrize(("ctype", "endpoint", "config"), REFUSED)
async def test_refused_on_every_facade_path(
    local: tuple[ConnectorsFacade, str], ctype: str, endpoint: str, config: dict[str, Any]
) -> None:
    facade, tenant = local
    with pytest.raises(ValidationError) as created:
        await facade.register_connector(tenant, "c", ctype, endpoint, config)
    message = _endpoint_error(created.value)
    if "scheme" in message:  # a wrong scheme names the accepted ones
        assert "://" in message.split(";", 1)[1]
    assert await facade.list_connectors(tenant) == []

    with pytest.raises(ValidationError) as tested:
        await facade.test_definition(tenant, "c", ctype, endpoint, config)
    _endpoint_error(tested.value)


@pytest.mark.parametrize(
    ("ctype", "good", "bad", "config"),
    [
        ("http", "http://127.0.0.1:1/", "file:///etc/passwd", {}),
        ("sql", "postgresql://app@127.0.0.1/db", "sqlite://h/x.db", {}),
        ("file", "file:///tmp", "file:///tmp%00x", {}),
        ("mcp", "http://127.0.0.1:1/mcp", "https://tok3n@127.0.0.1/mcp", {}),
    ],
)
async def test_refused_on_update_leaves_the_row(
    local: tuple[ConnectorsFacade, str], ctype: str, good: str, bad: str, config: dict[str, Any]
) -> None:
    facade, tenant = local
    info = await facade.register_connector(tenant, "c", ctype, good, config)
    with pytest.raises(ValidationError) as updated:
        await facade.update_connector(info.id, tenant, endpoint=bad)
    _endpoint_error(updated.value)
    after = await facade.get_connector(info.id, tenant)
    assert after is not None
    assert (after.endpoint, after.version) == (good, 1)


@pytest.mark.parametrize(("ctype", "endpoint", "config", "stored", "secret_fields"), ACCEPTED)
async def test_accepted_spellings(
    local: tuple[ConnectorsFacade, str],
    ctype: str,
    endpoint: str,
    config: dict[str, Any],
    stored: str,
    secret_fields: list[str],
) -> None:
    facade, tenant = local
    info = await facade.register_connector(tenant, "c", ctype, endpoint, config)
    assert (info.endpoint, info.secret_fields) == (stored, secret_fields)
    assert "p@ss" not in repr(info.to_dict())


async def test_every_type_publishes_its_rule(local: tuple[ConnectorsFacade, str]) -> None:
    facade, _ = local
    for ctype in facade.registry.types().values():
        described = facade.registry.describe(ctype)["endpoint"]
        assert EndpointRule.from_description(described) == ctype.endpoint
    http = facade.registry.describe(facade.registry.get("http"))["endpoint"]
    assert http["schemes"] == ["http", "https"]


async def test_apply_refuses_the_file_before_any_write(local: tuple[ConnectorsFacade, str]) -> None:
    facade, _ = local
    types = [facade.registry.describe(t) for t in facade.registry.types().values()]
    text = (
        "apiVersion: connectord/v1\nconnectors:\n"
        "  - {name: ok, connector_type: http, endpoint: 'http://127.0.0.1:1/'}\n"
        "  - {name: bad, connector_type: http, endpoint: 'gopher://127.0.0.1:70/'}\n"
    )
    with pytest.raises(ValidationError) as err:
        parse_document(text, types)
    assert [fe.loc for fe in err.value.errors] == [("connectors", 1, "endpoint")]
    assert "http://, https://" in err.value.errors[0].msg


# --- secrets do not follow a change of destination (9.3) -------------------------------------


async def test_a_new_host_needs_the_secrets_again(local: tuple[ConnectorsFacade, str]) -> None:
    facade, tenant = local
    info = await facade.register_connector(
        tenant, "c", "http", "http://127.0.0.1:1/", {"auth": {"kind": "bearer", "token": "t0ken-Secret"}}
    )
    for moved in ("http://127.0.0.2:1/", "https://127.0.0.1:1/", "http://127.0.0.1:2/"):
        with pytest.raises(ValidationError) as err:
            await facade.update_connector(info.id, tenant, endpoint=moved)
        assert [fe.loc for fe in err.value.errors] == [("config", "auth", "token")]
        assert "t0ken-Secret" not in str(err.value) + repr(err.value.errors)
    unchanged = await facade.get_connector(info.id, tenant)
    assert unchanged is not None
    assert unchanged.version == 1

    # Same destination, another path: the secret is kept.
    kept = await facade.update_connector(info.id, tenant, endpoint="http://127.0.0.1:1/other")
    assert kept is not None
    assert kept.secret_fields == ["auth.token"]
    # Sent again with the move: accepted.
    again = {"auth": {"kind": "bearer", "token": "n3w-Secret"}}
    moved_ok = await facade.update_connector(info.id, tenant, endpoint="http://127.0.0.2:1/", config=again)
    assert moved_ok is not None
    assert moved_ok.endpoint == "http://127.0.0.2:1/"


async def test_a_new_url_in_the_config_counts_as_a_move(local: tuple[ConnectorsFacade, str]) -> None:
    facade, tenant = local
    config = {
        "auth": {
            "kind": "oauth2_client_credentials",
            "token_url": "http://127.0.0.1:1/token",
            "client_id": "app",
            "client_secret": "cl1ent-Secret",
        }
    }
    info = await facade.register_connector(tenant, "c", "http", "http://127.0.0.1:1/", config)
    public = {"auth": {**info.config["auth"], "token_url": "http://127.0.0.9:1/token"}}
    with pytest.raises(ValidationError) as err:
        await facade.update_connector(info.id, tenant, config=public)
    assert [fe.loc for fe in err.value.errors] == [("config", "auth", "client_secret")]
    # Removing the secret with the move is allowed too.
    removed = await facade.update_connector(info.id, tenant, endpoint="http://127.0.0.2:1/", config={})
    assert removed is not None
    assert removed.secret_fields == []
