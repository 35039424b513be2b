from connectord.facade import ConnectorsFacade


async def test_register_and_get(facade: ConnectorsFacade, tenant: str) -> None:
    info = await facade.register_connector(tenant, "api", "http", endpoint="https://example.invalid")
    got = await facade.get_connector(info.id, tenant)
    assert got == info
