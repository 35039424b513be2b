"""Where commands send their work: the local store (through the facade) or a server (the SDK).

Both backends have the SDK's :class:`~connectord.client.AsyncClient` methods,
so commands and :mod:`connectord.declarative` are written once.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import typer

from connectord.admin import TENANT_SCOPES, Admin, RotationReport
from connectord.client import ApiKey, AsyncClient, NewKey, NewTenant
from connectord.declarative import ConnectorsAPI
from connectord.errors import DuplicateNameError, NotFoundError, RateLimitedError
from connectord.facade import ConnectorsFacade
from connectord.model import (
    UNSET,
    AuditEvent,
    BulkTest,
    Checkout,
    ConnectorInfo,
    HealthSummary,
    Page,
    SecretState,
    TenantRecord,
    TestResult,
    Unset,
)
from connectord.settings import Settings

#: The tenant local commands use when neither --tenant nor CONNECTORD_TENANT names one.
DEFAULT_TENANT = "default"
_RATE_LIMIT_ATTEMPTS = 5


class Backend(ConnectorsAPI, Protocol):
    """Everything a command can ask for, locally or from a server."""

    async def get_connector(self, connector_id: str) -> ConnectorInfo | None:
        """A connector or ``None``."""
        ...

    async def test_connector(self, connector_id: str) -> TestResult:
        """Test one connector."""
        ...

    async def test_definition(
        self,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TestResult:
        """Test an unsaved definition."""
        ...

    async def history(
        self, connector_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[TestResult]:
        """Past test results."""
        ...

    async def audit(
        self, limit: int = 100, cursor: str | None = None, connector_id: str | None = None
    ) -> Page[AuditEvent]:
        """Audit events."""
        ...

    async def health(self, connector_id: str) -> HealthSummary:
        """A connector's health summary."""
        ...

    async def tenant_id(self) -> str:
        """The id of the tenant the command is about."""
        ...

    async def create_tenant(self, name: str) -> NewTenant:
        """A tenant and its first key."""
        ...

    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant."""
        ...

    async def update_tenant(self, tenant_id: str, *, checkout_enabled: bool | None = None) -> TenantRecord:
        """Change a tenant's settings."""
        ...

    async def create_key(
        self,
        tenant_id: str,
        name: str = "key",
        scopes: Sequence[str] = ...,
        *,
        connector_ids: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> NewKey:
        """A new key, narrowed to ``connector_ids`` and ``selector`` when given."""
        ...

    async def credentials(self, connector_id: str) -> Checkout:
        """Check a connector's credentials out (audited)."""
        ...

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's keys."""
        ...

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Revoke a key."""
        ...

    async def rotate_secrets(self, new_key: bool) -> RotationReport:
        """Re-encrypt every secret under the newest key."""
        ...


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _find(tenants: list[TenantRecord], spec: str) -> TenantRecord | None:
    return next((t for t in tenants if spec in (t.id, t.name)), None)


class LocalBackend:
    """The local store, through the facade and :class:`~connectord.admin.Admin`.

    The tenant is ``tenant`` (a name or id); without one, the tenant named
    ``default``, created on first use (without a usable key: make one with
    ``connectord keys create``).
    """

    def __init__(self, facade: ConnectorsFacade, tenant: str | None) -> None:
        self.facade = facade
        self.admin = Admin(facade)
        self.spec = tenant
        self.actor = _actor()
        self._tenant_id: str | None = None

    async def tenant_id(self) -> str:
        """Resolve the tenant once per command."""
        if self._tenant_id is None:
            self._tenant_id = await self._resolve()
        return self._tenant_id

    async def _resolve(self) -> str:
        spec = self.spec or DEFAULT_TENANT
        found = _find(await self.admin.list_tenants(), spec)
        if found is not None:
            return found.id
        if self.spec:
            raise NotFoundError(f"no tenant {spec!r}; create it with: connectord tenants create {spec}")
        try:
            tenant, key = await self.admin.create_tenant(DEFAULT_TENANT, actor=self.actor)
        except DuplicateNameError:  # another command created it a moment ago
            again = _find(await self.admin.list_tenants(), DEFAULT_TENANT)
            if again is None:
                raise
            return again.id
        # Nobody saw this key; an unusable key is clutter, so it goes.
        await self.admin.revoke_key(tenant.id, key.key_id, actor=self.actor)
        return tenant.id

    async def list_connectors(
        self, connector_type: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[ConnectorInfo]:
        """Every matching connector, a page at a time."""
        tenant, cursor = await self.tenant_id(), None
        while True:
            page = await self.facade.list_connectors_page(tenant, connector_type, status, page_size, cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_connector(self, connector_id: str) -> ConnectorInfo | None:
        """A connector or ``None``."""
        return await self.facade.get_connector(connector_id, await self.tenant_id())

    async def register_connector(
        self,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        check_interval: float | None = None,
        failure_threshold: int | None = None,
    ) -> ConnectorInfo:
        """Register a connector."""
        return await self.facade.register_connector(
            await self.tenant_id(),
            name,
            connector_type,
            endpoint,
            config,
            metadata,
            actor=self.actor,
            check_interval=check_interval,
            failure_threshold=failure_threshold,
        )

    async def update_connector(
        self,
        connector_id: str,
        name: str | None = None,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str | None = None,
        if_version: int | None = None,
        *,
        check_interval: float | Unset | None = UNSET,
        failure_threshold: int | Unset | None = UNSET,
    ) -> ConnectorInfo | None:
        """Update a connector."""
        return await self.facade.update_connector(
            connector_id,
            await self.tenant_id(),
            name,
            endpoint,
            config,
            metadata,
            status=status,
            expected_version=if_version,
            actor=self.actor,
            check_interval=check_interval,
            failure_threshold=failure_threshold,
        )

    async def delete_connector(self, connector_id: str, if_version: int | None = None) -> bool:
        """Delete a connector."""
        return await self.facade.delete_connector(
            connector_id, await self.tenant_id(), expected_version=if_version, actor=self.actor
        )

    async def test_connector(self, connector_id: str) -> TestResult:
        """Test one connector."""
        return await self.facade.test_connector(connector_id, await self.tenant_id(), actor=self.actor)

    async def test_definition(
        self,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TestResult:
        """Test an unsaved definition."""
        return await self.facade.test_definition(
            await self.tenant_id(), name, connector_type, endpoint, config, metadata, actor=self.actor
        )

    async def test_many(
        self, targets: list[ConnectorInfo], connector_type: str | None, status: str | None, concurrency: int
    ) -> AsyncIterator[TestResult]:
        """The facade's bulk test (it lists the connectors itself; ``targets`` are for display)."""
        tenant = await self.tenant_id()
        async for result in self.facade.test_connectors(
            tenant, connector_type, status, concurrency=concurrency, actor=self.actor
        ):
            yield result

    async def connector_types(self) -> list[dict[str, Any]]:
        """Every type with its config JSON Schema."""
        registry = self.facade.registry
        return [registry.describe(t) for t in registry.types().values()]

    async def history(
        self, connector_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[TestResult]:
        """Past test results."""
        return await self.facade.history(connector_id, await self.tenant_id(), limit, cursor)

    async def health(self, connector_id: str) -> HealthSummary:
        """A connector's health summary."""
        return await self.facade.health(connector_id, await self.tenant_id())

    async def secret_states(self, connector_id: str) -> dict[str, SecretState]:
        """Fingerprints and references of a connector's stored secrets."""
        return await self.facade.secret_states(connector_id, await self.tenant_id())

    async def fingerprint_secrets(self, connector_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """Fingerprints of candidate values as the connector's secrets (nothing stored)."""
        tenant = await self.tenant_id()
        return await self.facade.fingerprint_secrets(connector_id, tenant, values, actor=self.actor)

    async def audit(
        self, limit: int = 100, cursor: str | None = None, connector_id: str | None = None
    ) -> Page[AuditEvent]:
        """Audit events."""
        return await self.facade.audit(await self.tenant_id(), limit, cursor, connector_id)

    async def create_tenant(self, name: str) -> NewTenant:
        """A tenant and its first key."""
        tenant, key = await self.admin.create_tenant(name, actor=self.actor)
        return NewTenant(tenant.id, tenant.name, key.key_id, key.api_key)

    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant."""
        return await self.admin.list_tenants()

    async def update_tenant(self, tenant_id: str, *, checkout_enabled: bool | None = None) -> TenantRecord:
        """Change a tenant's settings."""
        if checkout_enabled is not None:
            return await self.admin.set_checkout(tenant_id, checkout_enabled, actor=self.actor)
        found = await self.admin.get_tenant(tenant_id)
        if found is None:
            raise NotFoundError("no such tenant")
        return found

    async def create_key(
        self,
        tenant_id: str,
        name: str = "key",
        scopes: Sequence[str] = TENANT_SCOPES,
        *,
        connector_ids: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> NewKey:
        """A new key, narrowed to ``connector_ids`` and ``selector`` when given."""
        key = await self.admin.create_key(
            tenant_id,
            name=name,
            scopes=tuple(scopes),
            actor=self.actor,
            connector_ids=connector_ids,
            selector=selector,
        )
        return NewKey(key.key_id, key.tenant_id, key.api_key, key.scopes, key.reach)

    async def credentials(self, connector_id: str) -> Checkout:
        """Check a connector's credentials out of the local store (audited as the CLI's user)."""
        return await self.facade.checkout(connector_id, await self.tenant_id(), actor=self.actor)

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's keys."""
        return [
            ApiKey(k.id, k.name, k.scopes, k.created_at, k.revoked_at, k.reach)
            for k in await self.admin.list_keys(tenant_id)
        ]

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Revoke a key."""
        return await self.admin.revoke_key(tenant_id, key_id, actor=self.actor)

    async def rotate_secrets(self, new_key: bool) -> RotationReport:
        """Re-encrypt every secret under the newest key."""
        return await self.admin.rotate_secrets(new_key=new_key, actor=self.actor)


class RemoteBackend(AsyncClient):
    """A server, through the SDK. The API key decides the tenant of connector commands."""

    def __init__(self, url: str, api_key: str | None, tenant: str | None) -> None:
        super().__init__(url, api_key)
        self.spec = tenant

    async def tenant_id(self) -> str:
        """The tenant named by --tenant (tenant and key commands need an admin key)."""
        if not self.spec:
            raise typer.BadParameter(
                "with --url, name the tenant: --tenant NAME_OR_ID", param_hint="--tenant"
            )
        found = _find(await self.list_tenants(), self.spec)
        if found is None:
            raise NotFoundError(f"no tenant {self.spec!r} on the server")
        return found.id

    async def start_bulk_test(
        self, connector_type: str | None = None, status: str | None = None, concurrency: int | None = None
    ) -> BulkTest:
        """Start a bulk test on the server (``connectors test --all``), waiting out its rate limit."""
        for _ in range(_RATE_LIMIT_ATTEMPTS):
            try:
                return await super().start_bulk_test(connector_type, status, concurrency)
            except RateLimitedError as exc:
                await asyncio.sleep(min(exc.retry_after, 30.0))
        return await super().start_bulk_test(connector_type, status, concurrency)

    async def rotate_secrets(self, new_key: bool) -> RotationReport:
        """Rotation works on the store's key ring, so only locally."""
        raise typer.BadParameter(
            "secrets rotate works on the store directly: run it where the server runs, without --url",
            param_hint="--url",
        )


@asynccontextmanager
async def open_backend(
    url: str | None, api_key: str | None, tenant: str | None, *, tenant_given: bool, keyed: bool
) -> AsyncIterator[Backend]:
    """The backend of a command. ``keyed``: the command works in the caller's tenant, which
    the API key decides on a server (so ``--tenant`` is refused there)."""
    if url:
        if keyed and tenant_given:
            raise typer.BadParameter(
                "is for the local store; with --url the API key decides the tenant", param_hint="--tenant"
            )
        async with RemoteBackend(url, api_key, tenant) as remote:
            yield remote
        return
    async with ConnectorsFacade(settings=Settings()) as facade:
        yield LocalBackend(facade, tenant)
