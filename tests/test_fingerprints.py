"""Secret fingerprints, and references in export and apply (issue 14, item 5), over a real
facade on SQLite in a temporary folder (the REST routes: ``tests/api/test_secret_states.py``).

A fingerprint changes when and only when its secret does; apply compares fingerprints to send
only a changed secret; export writes server references back as references.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from connectord.admin import Admin
from connectord.cli.backends import LocalBackend
from connectord.declarative import (
    UNCHANGED,
    UPDATE,
    apply_plan,
    check_references,
    dump_document,
    export_document,
    make_plan,
    parse_document,
)
from connectord.errors import NotFoundError, ValidationError
from connectord.facade import ConnectorsFacade
from connectord.model import ConnectorInfo, Reach
from connectord.settings import Settings

PASSWORD = "fp-Secret-Value-1"
OTHER = "fp-Secret-Value-2"


@pytest.fixture
async def facade(tmp_path: Path) -> AsyncIterator[ConnectorsFacade]:
    settings = Settings(data_dir=tmp_path / "data", secret_ref_env=["CD_FP_*"])
    async with ConnectorsFacade(settings=settings) as made:
        yield made


@pytest.fixture
async def api(facade: ConnectorsFacade) -> LocalBackend:
    return LocalBackend(facade, None)


async def _web(api: LocalBackend, password: str = PASSWORD, **config: object) -> ConnectorInfo:
    return await api.register_connector(
        "web", "custom", "127.0.0.1:9", {"password": password, "tls": False, **config}
    )


async def _fp(api: LocalBackend, info: ConnectorInfo, name: str = "password") -> str:
    return (await api.secret_states(info.id))[name].fingerprint


async def test_a_fingerprint_changes_when_and_only_when_its_secret_does(api: LocalBackend) -> None:
    info = await _web(api)
    first = await _fp(api, info)
    assert first.startswith("hmac-sha256:")
    assert PASSWORD not in first
    await api.update_connector(info.id, metadata={"team": "core"})
    await api.update_connector(info.id, config={"tls": True})
    assert await _fp(api, info) == first  # other changes leave it as it was
    await api.update_connector(info.id, config={"password": OTHER})
    second = await _fp(api, info)
    assert second != first
    await api.update_connector(info.id, config={"password": PASSWORD})
    assert await _fp(api, info) == first  # the same value, the same fingerprint


async def test_equal_values_in_two_connectors_do_not_look_equal(api: LocalBackend) -> None:
    one = await _web(api)
    two = await api.register_connector("web2", "custom", "127.0.0.1:9", {"password": PASSWORD})
    assert await _fp(api, one) != await _fp(api, two)


async def test_a_candidate_matches_the_stored_fingerprint_only_for_the_same_value(api: LocalBackend) -> None:
    info = await _web(api)
    made = await api.fingerprint_secrets(info.id, {"password": PASSWORD, "other": PASSWORD})
    assert made["password"] == await _fp(api, info)
    assert made["other"] != made["password"]  # keyed by the field too
    assert (await api.fingerprint_secrets(info.id, {"password": OTHER}))["password"] != made["password"]
    audit = await api.audit()
    asked = [e.details for e in audit.items if e.action == "connector.secrets.fingerprint"]
    assert asked == [{"fields": ["password"]}, {"fields": ["other", "password"]}]  # newest first
    assert PASSWORD not in repr(audit.items)
    assert OTHER not in repr(audit.items)


async def test_candidates_are_checked(api: LocalBackend) -> None:
    info = await _web(api)
    with pytest.raises(ValidationError):
        await api.fingerprint_secrets(info.id, {"password": 3})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        await api.fingerprint_secrets(info.id, {f"f{i}": "x" for i in range(65)})
    with pytest.raises(NotFoundError):
        await api.fingerprint_secrets("0" * 26, {"password": "x"})


async def test_a_reach_that_does_not_cover_the_connector_answers_not_found(
    facade: ConnectorsFacade, api: LocalBackend
) -> None:
    info = await _web(api)
    tenant = await api.tenant_id()
    elsewhere = Reach(connector_ids=frozenset({"0" * 26}))
    with pytest.raises(NotFoundError):
        await facade.secret_states(info.id, tenant, reach=elsewhere)
    assert "password" in await facade.secret_states(
        info.id, tenant, reach=Reach(connector_ids=frozenset({info.id}))
    )


async def test_a_key_rotation_changes_the_key_id_of_every_fingerprint(
    tmp_path: Path, facade: ConnectorsFacade, api: LocalBackend
) -> None:
    info = await _web(api)
    before = await _fp(api, info)
    await Admin(facade).rotate_secrets(new_key=True)
    after = await _fp(api, info)
    assert after.split(":")[1] != before.split(":")[1]  # documented: re-export after a rotation


# --- apply compares fingerprints -----------------------------------------------------------

DOC = textwrap.dedent(
    """\
    apiVersion: connectord/v1
    connectors:
      - name: web
        connector_type: custom
        endpoint: 127.0.0.1:9
        config:
          password: ${CD_FP_PASSWORD}
          tls: false
    """
)


async def _plan_of(api: LocalBackend, text: str, base: Path) -> list[tuple[str, list[str], list[str]]]:
    plan = await make_plan(api, parse_document(text, await api.connector_types()), base_dir=base)
    return [(c.action, c.send, c.notes) for c in plan.changes]


async def test_apply_sends_a_secret_only_when_its_value_changed(
    api: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CD_FP_PASSWORD", PASSWORD)
    declared = parse_document(DOC, await api.connector_types())
    plan = await make_plan(api, declared, base_dir=tmp_path)
    await apply_plan(api, plan, check_references(plan, tmp_path))
    assert await _plan_of(api, DOC, tmp_path) == [(UNCHANGED, [], [])]
    monkeypatch.setenv("CD_FP_PASSWORD", OTHER)
    assert await _plan_of(api, DOC, tmp_path) == [(UPDATE, ["password"], ["secret password: changed"])]
    # Where the reference does not resolve, a set secret is kept, as before fingerprints.
    monkeypatch.delenv("CD_FP_PASSWORD")
    assert await _plan_of(api, DOC, tmp_path) == [(UNCHANGED, [], [])]


async def test_export_writes_references_back_and_fingerprints_that_apply_reads(
    api: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CD_FP_TOKEN", "value-kept-by-the-operator")
    await _web(api)
    await api.register_connector("refd", "custom", "127.0.0.1:9", {"password": "env:CD_FP_TOKEN"})
    text = dump_document(await export_document(api))
    assert PASSWORD not in text
    assert "value-kept-by-the-operator" not in text
    entries = {e["name"]: e for e in yaml.safe_load(text)["connectors"]}
    assert entries["refd"]["config"]["password"] == "ref+env:CD_FP_TOKEN"
    assert entries["web"]["config"]["password"] == "${WEB_PASSWORD}"
    web = entries["web"]["secret_fingerprints"]["password"]
    assert web == await _fp(api, await _named(api, "web"))
    # The exported file applies as unchanged with no variable set: the fingerprints match.
    assert [a for a, _, _ in await _plan_of(api, text, tmp_path)] == [UNCHANGED, UNCHANGED]
    # A changed server reference is sent as written; the server keeps the reference.
    changed = text.replace("ref+env:CD_FP_TOKEN", "ref+env:CD_FP_OTHER")
    assert await _plan_of(api, changed, tmp_path) == [
        (UNCHANGED, [], []),
        (UPDATE, ["password"], ["secret password: changed"]),
    ]
    plan = await make_plan(api, parse_document(changed, await api.connector_types()), base_dir=tmp_path)
    await apply_plan(api, plan, check_references(plan, tmp_path))
    refd = await _named(api, "refd")
    assert (await api.secret_states(refd.id))["password"].reference == "env:CD_FP_OTHER"


async def test_a_server_reference_must_be_one_the_server_knows(api: LocalBackend) -> None:
    bad = DOC.replace("${CD_FP_PASSWORD}", "ref+vault:secret/x")
    with pytest.raises(ValidationError) as caught:
        parse_document(bad, await api.connector_types())
    assert "ref+env:NAME" in str(caught.value.errors)


async def _named(api: LocalBackend, name: str) -> ConnectorInfo:
    return {c.name: c async for c in api.list_connectors()}[name]
