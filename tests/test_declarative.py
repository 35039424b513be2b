"""Declarative provisioning (apply / export) over a real facade on SQLite in a temporary folder.

The CLI's local backend is the :class:`~connectord.declarative.ConnectorsAPI` here;
the same code runs over the SDK against a server in ``test_cli.py``.
"""

from __future__ import annotations

import http.server
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from connectord.cli.backends import LocalBackend
from connectord.declarative import (
    CREATE,
    DELETE,
    UNCHANGED,
    UPDATE,
    apply_plan,
    check_references,
    dump_document,
    env_name,
    export_document,
    is_secret,
    make_plan,
    parse_document,
    secret_patterns,
)
from connectord.errors import ValidationError, VersionConflictError
from connectord.facade import ConnectorsFacade
from connectord.model import ConnectorInfo
from connectord.settings import Settings

SECRET = "s3cr3t-Declarative-Value"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    """The local backend over a fresh store; loopback opened for the http probe."""
    settings = Settings(data_dir=tmp_path / "data", egress_allow=["127.0.0.0/8"])
    async with ConnectorsFacade(settings=settings) as facade:
        yield LocalBackend(facade, None)


async def _apply(api: LocalBackend, text: str, base: Path, **kw: bool) -> list[tuple[str, str]]:
    declared = parse_document(text, await api.connector_types())
    plan = await make_plan(api, declared, **kw)
    await apply_plan(api, plan, check_references(plan, base))
    return [(c.action, c.name) for c in plan.changes]


async def _named(api: LocalBackend, name: str) -> ConnectorInfo:
    found = {c.name: c async for c in api.list_connectors()}
    return found[name]


async def _plan(api: LocalBackend, text: str, **kw: bool) -> list[tuple[str, str]]:
    plan = await make_plan(api, parse_document(text, await api.connector_types()), **kw)
    return [(c.action, c.name) for c in plan.changes]


DOC = textwrap.dedent(
    """\
    apiVersion: connectord/v1
    connectors:
      - name: web
        connector_type: custom
        endpoint: 127.0.0.1:9
        config:
          password: ${DECL_PASSWORD}
          tls: false
        metadata: {team: core}
      - name: api
        connector_type: http
        endpoint: http://127.0.0.1:9/
        config:
          auth: {kind: bearer, token: "file:token.txt"}
          secret_headers: {X-Extra: "${DECL_HEADER}"}
          headers: {Accept: application/json}
    """
)


@pytest.fixture
def refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment variables and the token file DOC refers to."""
    monkeypatch.setenv("DECL_PASSWORD", SECRET)
    monkeypatch.setenv("DECL_HEADER", "header-" + SECRET)
    (tmp_path / "token.txt").write_text("token-" + SECRET + "\n")
    return tmp_path


async def test_secret_patterns_come_from_the_type_schemas(api: LocalBackend) -> None:
    patterns = {t["name"]: secret_patterns(t["config_schema"]) for t in await api.connector_types()}
    assert patterns["custom"] == {("password",)}
    assert {("auth", "token"), ("auth", "client_secret"), ("secret_headers", "*")} <= patterns["http"]
    assert is_secret(("secret_headers", "Authorization"), patterns["http"])
    assert not is_secret(("headers", "Accept"), patterns["http"])
    assert not is_secret(("auth", "kind"), patterns["http"])


async def test_a_literal_secret_is_refused_without_echoing_it(api: LocalBackend) -> None:
    text = DOC.replace("${DECL_PASSWORD}", SECRET)
    with pytest.raises(ValidationError) as err:
        parse_document(text, await api.connector_types())
    assert [fe.loc for fe in err.value.errors] == [("connectors", 0, "config", "password")]
    assert "reference" in err.value.errors[0].msg
    assert SECRET not in str(err.value) + repr(err.value.errors)


async def test_every_problem_of_a_file_is_reported_with_its_place(api: LocalBackend) -> None:
    text = textwrap.dedent(
        """\
        apiVersion: connectord/v2
        extra: 1
        connectors:
          - {name: a, connector_type: nope}
          - {name: b, connector_type: custom, endpoint: "tcp://u:pw@h:1", status: connected, colour: red}
          - {name: c, connector_type: custom}
          - {name: c, connector_type: custom}
          - not-a-mapping
          - {name: d, type: nope}
          - {name: e, type: custom, connector_type: custom}
        """
    )
    with pytest.raises(ValidationError) as err:
        parse_document(text, await api.connector_types())
    locs = {fe.loc for fe in err.value.errors}
    assert locs == {
        ("apiVersion",),
        ("extra",),
        ("connectors", 0, "connector_type"),
        ("connectors", 1, "endpoint"),
        ("connectors", 1, "status"),
        ("connectors", 1, "colour"),
        ("connectors", 3, "name"),
        ("connectors", 4),
        ("connectors", 5, "type"),
        ("connectors", 6, "type"),
    }
    assert "pw" not in " ".join(fe.msg for fe in err.value.errors)


async def test_the_old_type_key_still_applies(api: LocalBackend, refs: Path) -> None:
    """Files written before ``connector_type`` was the key (``type:``) apply the same."""
    assert await _apply(api, DOC, refs) == [(CREATE, "web"), (CREATE, "api")]
    old_style = DOC.replace("connector_type:", "type:")
    assert "connector_type" not in old_style
    declared = parse_document(old_style, await api.connector_types())
    assert [(d.connector_type, d.type_key) for d in declared] == [("custom", "type"), ("http", "type")]
    assert await _plan(api, old_style) == [(UNCHANGED, "web"), (UNCHANGED, "api")]


async def test_invalid_yaml_names_the_line(api: LocalBackend) -> None:
    with pytest.raises(ValidationError, match=r"not valid YAML at line \d+"):
        parse_document("apiVersion: connectord/v1\nconnectors: [\n", await api.connector_types())


async def test_apply_creates_and_a_second_apply_changes_nothing(api: LocalBackend, refs: Path) -> None:
    assert await _apply(api, DOC, refs) == [(CREATE, "web"), (CREATE, "api")]
    by_name = {c.name: c async for c in api.list_connectors()}
    assert by_name["web"].secret_fields == ["password"]
    assert by_name["web"].metadata == {"team": "core"}
    assert by_name["api"].secret_fields == ["auth.token", "secret_headers.X-Extra"]
    versions = {n: c.version for n, c in by_name.items()}
    assert await _apply(api, DOC, refs) == [(UNCHANGED, "web"), (UNCHANGED, "api")]
    assert {c.name: c.version async for c in api.list_connectors()} == versions


async def test_applied_secrets_are_the_referenced_values(api: LocalBackend, tmp_path: Path) -> None:
    """The token resolved from ``file:`` reaches a real loopback HTTP server, which checks it."""
    token = "token-" + SECRET
    with _bearer_server(token) as port:
        (tmp_path / "token.txt").write_text(token + "\n")
        text = textwrap.dedent(
            f"""\
            apiVersion: connectord/v1
            connectors:
              - name: checked
                type: http
                endpoint: http://127.0.0.1:{port}/
                config: {{auth: {{kind: bearer, token: "file:token.txt"}}}}
            """
        )
        await _apply(api, text, tmp_path)
        info = await _named(api, "checked")
        ok = await api.test_connector(info.id)
        assert ok.success, ok.error
        (tmp_path / "token.txt").write_text("wrong\n")
        await _apply(api, text, tmp_path, update_secrets=True)
        refused = await api.test_connector(info.id)
    assert not refused.success
    assert token not in str(ok.to_dict()) + str(refused.to_dict())


async def test_only_what_changed_is_updated(api: LocalBackend, refs: Path) -> None:
    await _apply(api, DOC, refs)
    changed = DOC.replace("127.0.0.1:9\n", "127.0.0.1:10\n").replace("team: core", "team: edge")
    plan = await make_plan(api, parse_document(changed, await api.connector_types()))
    web = next(c for c in plan.changes if c.name == "web")
    assert web.action == UPDATE
    assert web.notes == [
        "endpoint: 127.0.0.1:9 -> 127.0.0.1:10",
        "metadata: ~team",
        "secret password: re-sent (the destination changes)",
    ]
    assert set(web.updates) == {"endpoint", "metadata", "config"}
    assert next(c for c in plan.changes if c.name == "api").action == UNCHANGED
    await apply_plan(api, plan, check_references(plan, refs))
    assert await _plan(api, changed) == [(UNCHANGED, "web"), (UNCHANGED, "api")]


async def test_secrets_are_resent_only_on_request_and_removed_when_undeclared(
    api: LocalBackend, refs: Path
) -> None:
    await _apply(api, DOC, refs)
    plan = await make_plan(api, parse_document(DOC, await api.connector_types()), update_secrets=True)
    assert [c.action for c in plan.changes] == [UPDATE, UPDATE]
    assert "secret password: re-sent" in plan.changes[0].notes
    without = DOC.replace("password: ${DECL_PASSWORD}\n      ", "")
    assert await _apply(api, without, refs) == [(UPDATE, "web"), (UNCHANGED, "api")]
    web = await _named(api, "web")
    assert web.secret_fields == []
    assert web.config == {"tls": False}


async def test_references_resolve_before_anything_changes(
    api: LocalBackend, refs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DECL_HEADER")
    plan = await make_plan(api, parse_document(DOC, await api.connector_types()))
    with pytest.raises(ValidationError) as err:
        check_references(plan, refs)
    assert err.value.errors[0].loc == ("connectors", 1, "config", "secret_headers", "X-Extra")
    assert "DECL_HEADER is not set" in err.value.errors[0].msg
    assert [c async for c in api.list_connectors()] == []


async def test_prune_deletes_what_the_file_no_longer_declares(api: LocalBackend, refs: Path) -> None:
    await _apply(api, DOC, refs)
    only_web = DOC.split("  - name: api")[0]
    plan = await make_plan(api, parse_document(only_web, await api.connector_types()))
    assert plan.undeclared == ["api"]
    assert await _apply(api, only_web, refs, prune=True) == [(UNCHANGED, "web"), (DELETE, "api")]
    assert [c.name async for c in api.list_connectors()] == ["web"]


async def test_status_is_declared_and_undeclared_means_active(api: LocalBackend, refs: Path) -> None:
    paused = DOC.replace("metadata: {team: core}", "metadata: {team: core}\n    status: disconnected")
    await _apply(api, paused, refs)
    assert {c.name: c.status async for c in api.list_connectors()}["web"] == "disconnected"
    assert await _plan(api, paused) == [(UNCHANGED, "web"), (UNCHANGED, "api")]
    assert await _apply(api, DOC, refs) == [(UPDATE, "web"), (UNCHANGED, "api")]
    assert {c.name: c.status async for c in api.list_connectors()}["web"] == "registered"


async def test_a_type_change_is_refused(api: LocalBackend, refs: Path) -> None:
    await _apply(api, DOC, refs)
    with pytest.raises(ValidationError, match="is a custom connector"):
        await _plan(api, DOC.replace("connector_type: custom", "connector_type: sql"))


async def test_a_change_made_meanwhile_is_not_overwritten(api: LocalBackend, refs: Path) -> None:
    await _apply(api, DOC, refs)
    plan = await make_plan(
        api, parse_document(DOC.replace("team: core", "team: x"), await api.connector_types())
    )
    web = await _named(api, "web")
    await api.update_connector(web.id, metadata={"team": "someone else"})
    with pytest.raises(VersionConflictError):
        await apply_plan(api, plan, check_references(plan, refs))


async def test_export_then_apply_round_trips(api: LocalBackend, refs: Path) -> None:
    paused = DOC.replace("metadata: {team: core}", "metadata: {team: core}\n    status: deprecated")
    await _apply(api, paused, refs)
    doc = await export_document(api)
    text = dump_document(doc)
    assert SECRET not in text
    assert "#   API_AUTH_TOKEN" in text
    exported = yaml.safe_load(text)
    web, http_api = exported["connectors"]
    assert web.pop("secret_fingerprints")["password"].startswith("hmac-sha256:")  # tests/test_fingerprints.py
    assert web == {
        "name": "web",
        "connector_type": "custom",
        "endpoint": "127.0.0.1:9",
        "config": {"tls": False, "password": "${WEB_PASSWORD}"},
        "metadata": {"team": "core"},
        "status": "deprecated",
    }
    assert http_api["config"]["auth"] == {"kind": "bearer", "token": "${API_AUTH_TOKEN}"}
    assert http_api["config"]["secret_headers"] == {"X-Extra": "${API_SECRET_HEADERS_X_EXTRA}"}
    # No variable is set: unchanged connectors need none.
    assert await _plan(api, text) == [(UNCHANGED, "web"), (UNCHANGED, "api")]


def test_env_names_are_valid_and_distinct() -> None:
    taken: set[str] = set()
    assert env_name("orders-db", "password", taken) == "ORDERS_DB_PASSWORD"
    assert env_name("orders_db", "password", taken) == "ORDERS_DB_PASSWORD_2"
    assert env_name("9lives", "auth.token", taken) == "C_9LIVES_AUTH_TOKEN"


class _Bearer(http.server.BaseHTTPRequestHandler):
    token = ""

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {self.token}"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _bearer_server(token: str) -> Iterator[int]:
    """A loopback HTTP server that answers 200 only to ``Authorization: Bearer <token>``."""
    handler = type("Handler", (_Bearer,), {"token": token})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
