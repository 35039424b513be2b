"""The status lifecycle (``docs/status-lifecycle.md``), on both backends."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from connectord import ConnectorInfo, ConnectorsFacade, InvalidTransitionError, ValidationError
from connectord.lifecycle import STICKY_STATUSES, USER_TRANSITIONS

if TYPE_CHECKING:
    from conftest import VaultType

STATUSES = ["registered", "configuring", "ready", "connected", "disconnected", "error", "deprecated"]

# Written out by hand from the documented lifecycle, so a change to the code's
# table shows up here as a failure to look at, not as a silently new rule.
ALLOWED_FROM: dict[str, set[str]] = {
    "registered": {"configuring", "ready", "connected", "disconnected", "error", "deprecated"},
    "configuring": {"registered", "ready", "connected", "error", "disconnected"},
    "ready": {"registered", "configuring"},
    "disconnected": {"registered", "configuring", "ready", "connected", "error"},
    "deprecated": {"registered", "configuring", "ready", "connected", "disconnected", "error"},
}
TEST_ONLY = {"connected", "error"}
STICKY = {"disconnected", "deprecated", "configuring"}


def test_the_documented_table_is_the_code_table() -> None:
    assert {k: set(v) for k, v in USER_TRANSITIONS.items()} == ALLOWED_FROM
    assert set(STICKY_STATUSES) == STICKY
    assert set(STATUSES) == set(ALLOWED_FROM) | TEST_ONLY


async def _in_status(facade: ConnectorsFacade, tenant: str, status: str, name: str) -> ConnectorInfo:
    """A ``vault`` connector brought to ``status`` the way a user would get there."""
    info = await facade.register_connector(tenant, name, "vault", config={"ok": status != "error"})
    if status in TEST_ONLY:
        result = await facade.test_connector(info.id, tenant)
        assert result.success is (status == "connected")
    elif status != "registered":
        await facade.update_connector(info.id, tenant, status=status)
    current = await facade.get_connector(info.id, tenant)
    assert current is not None
    assert current.status == status
    return current


@pytest.mark.parametrize("source", STATUSES)
async def test_every_user_transition_from(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, source: str
) -> None:
    for target in STATUSES:
        info = await _in_status(facade, tenant, source, f"{source}-to-{target}")
        if target == source:
            assert await facade.update_connector(info.id, tenant, status=target) == info  # a no-op
            continue
        if source in ALLOWED_FROM.get(target, set()):
            updated = await facade.update_connector(info.id, tenant, status=target)
            assert updated is not None
            assert updated.status == target
            assert updated.version == info.version + 1
            continue
        with pytest.raises(InvalidTransitionError) as caught:
            await facade.update_connector(info.id, tenant, status=target)
        if target in TEST_ONLY:
            assert "tests only" in caught.value.message
        assert await facade.get_connector(info.id, tenant) == info


async def test_unknown_status_is_a_validation_error(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "c", "vault")
    with pytest.raises(ValidationError) as caught:
        await facade.update_connector(info.id, tenant, status="asleep")
    assert caught.value.errors[0].loc == ("status",)


@pytest.mark.parametrize("source", STATUSES)
async def test_a_definition_change_resets_unless_sticky(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, source: str
) -> None:
    changes: list[dict[str, object]] = [
        {"endpoint": "moved.invalid:2"},
        {"config": {"region": "moved"}},
        {"config": {"password": "new"}},  # a secret is part of the definition too
    ]
    for i, change in enumerate(changes):
        info = await _in_status(facade, tenant, source, f"c{i}")
        updated = await facade.update_connector(info.id, tenant, **change)  # type: ignore[arg-type]
        assert updated is not None
        assert updated.status == (source if source in STICKY else "registered"), change


@pytest.mark.parametrize("source", STATUSES)
async def test_name_and_metadata_changes_keep_the_status(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, source: str
) -> None:
    info = await _in_status(facade, tenant, source, "c")
    updated = await facade.update_connector(info.id, tenant, name="renamed", metadata={"a": 1})
    assert updated is not None
    assert updated.status == source


async def test_a_status_set_with_a_definition_change_wins(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await _in_status(facade, tenant, "registered", "c")
    updated = await facade.update_connector(info.id, tenant, config={"region": "x"}, status="ready")
    assert updated is not None
    assert updated.status == "ready"
    # Asked for again with another change: still what the user asked for.
    again = await facade.update_connector(info.id, tenant, endpoint="moved.invalid:1", status="ready")
    assert again is not None
    assert again.status == "ready"


async def test_a_resent_test_status_does_not_survive_a_definition_change(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    """A client that reads, edits and writes back the whole representation sends the
    status it read; a test-set status is accepted unchanged but not kept."""
    info = await _in_status(facade, tenant, "connected", "c")
    same = await facade.update_connector(info.id, tenant, status="connected", metadata={"a": 1})
    assert same is not None
    assert same.status == "connected"
    edited = await facade.update_connector(info.id, tenant, status="connected", config={"region": "x"})
    assert edited is not None
    assert edited.status == "registered"


@pytest.mark.parametrize("source", ["registered", "configuring", "ready", "connected", "error"])
async def test_tests_set_connected_or_error(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, source: str
) -> None:
    info = await _in_status(facade, tenant, source, "c")
    assert info.last_used_at is None or source in TEST_ONLY
    failing = await facade.update_connector(info.id, tenant, config={"ok": False}, status=None)
    assert failing is not None
    result = await facade.test_connector(info.id, tenant)
    assert result.success is False
    after_failure = await facade.get_connector(info.id, tenant)
    assert after_failure is not None
    assert after_failure.status == "error"
    assert after_failure.last_used_at == result.tested_at

    await facade.update_connector(info.id, tenant, config={"ok": True})
    passed = await facade.test_connector(info.id, tenant)
    after_success = await facade.get_connector(info.id, tenant)
    assert after_success is not None
    assert after_success.status == "connected"
    assert after_success.last_used_at == passed.tested_at
    assert passed.tested_at is not None
    assert result.tested_at is not None
    assert passed.tested_at > result.tested_at


async def test_a_disconnected_connector_is_tested_but_stays_paused(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await _in_status(facade, tenant, "disconnected", "c")
    for ok in (True, False):
        await facade.update_connector(info.id, tenant, config={"ok": ok})
        result = await facade.test_connector(info.id, tenant)
        assert result.success is ok
        stored = await facade.get_connector(info.id, tenant)
        assert stored is not None
        assert stored.status == "disconnected"
        assert stored.last_used_at == result.tested_at
    assert len((await facade.history(info.id, tenant)).items) == 2


async def test_a_deprecated_connector_refuses_tests(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await _in_status(facade, tenant, "deprecated", "c")
    audit_before = (await facade.audit(tenant, limit=1000)).items
    with pytest.raises(InvalidTransitionError) as caught:
        await facade.test_connector(info.id, tenant)
    assert "deprecated" in caught.value.message
    assert vault.seen == []
    assert await facade.get_connector(info.id, tenant) == info
    assert (await facade.history(info.id, tenant)).items == []
    assert (await facade.audit(tenant, limit=1000)).items == audit_before

    revived = await facade.update_connector(info.id, tenant, status="registered")
    assert revived is not None
    assert (await facade.test_connector(info.id, tenant)).success


async def test_a_new_connector_is_registered_and_unused(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "c", "vault")
    assert info.status == "registered"
    assert info.last_used_at is None


@pytest.mark.parametrize("paused", ["disconnected", "deprecated"])
async def test_a_status_set_while_a_test_runs_is_kept(
    facade: ConnectorsFacade, tenant: str, vault: VaultType, paused: str
) -> None:
    """A user who pauses or retires a connector during a long test keeps that status:
    the test's verdict must not overwrite it when the result is recorded."""
    info = await facade.register_connector(tenant, "slow", "vault", config={"sleep": 0.5})
    running = asyncio.create_task(facade.test_connector(info.id, tenant))
    await vault.started.wait()
    changed = await facade.update_connector(info.id, tenant, status=paused)
    assert changed is not None
    result = await running
    assert result.success is True
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.status == paused
    assert stored.last_used_at == result.tested_at
    assert len((await facade.history(info.id, tenant)).items) == 1


async def test_a_connector_deleted_while_a_test_runs_stays_deleted(
    facade: ConnectorsFacade, tenant: str, vault: VaultType
) -> None:
    info = await facade.register_connector(tenant, "slow", "vault", config={"sleep": 0.3})
    running = asyncio.create_task(facade.test_connector(info.id, tenant))
    await vault.started.wait()
    assert await facade.delete_connector(info.id, tenant)
    result = await running
    assert result.connector_id == info.id
    assert await facade.get_connector(info.id, tenant) is None
    assert [e.action for e in (await facade.audit(tenant, connector_id=info.id)).items] == [
        "connector.delete",
        "connector.create",
    ]
