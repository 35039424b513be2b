"""Input the database could not hold is refused (or cannot exist) at the facade, for
every caller: library, CLI and API alike."""

from __future__ import annotations

import pytest

from connectord import NotFoundError, ValidationError
from connectord.facade import ConnectorsFacade


@pytest.mark.parametrize("bad_id", ["\x00", "abc", "01a21e69-5b0e-79da-b19b-d1204f861bd\x00", "X" * 500])
async def test_an_id_the_store_never_gives_cannot_exist(
    facade: ConnectorsFacade, tenant: str, bad_id: str
) -> None:
    assert await facade.get_connector(bad_id, tenant) is None
    assert await facade.update_connector(bad_id, tenant, metadata={"a": 1}) is None
    assert await facade.delete_connector(bad_id, tenant) is False
    with pytest.raises(NotFoundError):
        await facade.test_connector(bad_id, tenant)
    with pytest.raises(NotFoundError):
        await facade.history(bad_id, tenant)
    assert (await facade.audit(tenant, connector_id=bad_id)).items == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metadata", {"label": "\ud800"}),
        ("metadata", {"label": "a\x00b"}),
        ("metadata", {"n": 2**70}),
        ("metadata", {"x": float("nan")}),
        ("config", {"capabilities": ["read"], "ca_pem": "\x00"}),
    ],
)
async def test_values_that_cannot_be_stored_are_refused(
    facade: ConnectorsFacade, tenant: str, field: str, value: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as caught:
        await facade.register_connector(tenant, "c", "custom", endpoint="127.0.0.1:1", **{field: value})
    assert caught.value.errors[0].loc[0] == field
    assert await facade.list_connectors(tenant) == []


async def test_a_type_filter_the_store_cannot_hold_is_refused(facade: ConnectorsFacade, tenant: str) -> None:
    with pytest.raises(ValidationError):
        await facade.list_connectors(tenant, connector_type="http\x00")
