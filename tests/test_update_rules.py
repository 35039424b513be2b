"""Regression tests of issue 9's smaller findings: parallel PUTs without If-Match all land
(item 9), configs are strict, status messages name the status, a no-op PUT keeps the version."""

from __future__ import annotations

import asyncio

import pytest

from connectord.errors import InvalidTransitionError, ValidationError
from connectord.facade import ConnectorsFacade


async def test_twenty_parallel_updates_without_a_version_all_land(
    local: tuple[ConnectorsFacade, str],
) -> None:
    facade, tenant = local
    info = await facade.register_connector(tenant, "race", "custom", endpoint="127.0.0.1:1")
    updated = await asyncio.gather(
        *(facade.update_connector(info.id, tenant, metadata={"writer": i}) for i in range(20)),
        return_exceptions=True,
    )
    assert [u for u in updated if isinstance(u, BaseException)] == []
    stored = await facade.get_connector(info.id, tenant)
    assert stored is not None
    assert stored.version == 21  # every write landed, the last one wins
    assert stored.metadata in [{"writer": i} for i in range(20)]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"timeout": True}, ("config", "timeout")),
        ({"timeout": "5"}, ("config", "timeout")),
        ({"tls": "off"}, ("config", "tls")),
        ({"tls": 1}, ("config", "tls")),
    ],
)
async def test_configs_are_strict(
    local: tuple[ConnectorsFacade, str], config: dict[str, object], field: tuple[str, ...]
) -> None:
    facade, tenant = local
    with pytest.raises(ValidationError) as err:
        await facade.register_connector(tenant, "c", "custom", "127.0.0.1:1", config)
    assert [fe.loc[:2] for fe in err.value.errors] == [field]
    assert await facade.list_connectors(tenant) == []


async def test_a_refused_status_change_names_the_statuses(local: tuple[ConnectorsFacade, str]) -> None:
    facade, tenant = local
    info = await facade.register_connector(tenant, "c", "custom", "127.0.0.1:1")
    await facade.update_connector(info.id, tenant, status="deprecated")
    with pytest.raises(InvalidTransitionError) as err:
        await facade.update_connector(info.id, tenant, status="ready")
    assert err.value.message == "a deprecated connector cannot be set to ready"
    with pytest.raises(InvalidTransitionError) as tests_only:
        await facade.update_connector(info.id, tenant, status="connected")
    assert "'connected'" in tests_only.value.message
    assert "ConnectorStatus" not in tests_only.value.message


async def test_an_update_that_changes_nothing_keeps_the_version(local: tuple[ConnectorsFacade, str]) -> None:
    facade, tenant = local
    info = await facade.register_connector(
        tenant, "c", "custom", "tcp://u:pw@127.0.0.1:1", {"tls": False}, metadata={"a": 1}
    )
    same = await facade.update_connector(
        info.id, tenant, name="c", endpoint="tcp://u@127.0.0.1:1", config={"tls": False}, metadata={"a": 1}
    )
    assert same is not None
    assert same.version == 1
    assert same.updated_at is None
    assert same.secret_fields == ["password"]
