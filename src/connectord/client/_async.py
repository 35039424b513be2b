"""The asynchronous client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Self, TypeVar, overload

import httpx

from connectord.client._base import DEFAULT_TEST_TIMEOUT, DEFAULT_TIMEOUT, WAIT_STEP, ClientBase
from connectord.client._calls import Call, Calls, changes, definition, webhook_body
from connectord.client._errors import TransportError
from connectord.client._models import ApiKey, NewKey, NewTenant, NewWebhook
from connectord.model import (
    TENANT_SCOPES,
    UNSET,
    AuditEvent,
    BulkTest,
    Checkout,
    ConnectorInfo,
    DeliveryInfo,
    HealthSummary,
    Page,
    SecretState,
    TenantRecord,
    TestResult,
    Unset,
    WebhookInfo,
)

T = TypeVar("T")


class AsyncClient(ClientBase):
    """The asynchronous client: :class:`Client`'s methods as coroutines.

    :meth:`list_connectors` is an async iterator. Use it as an async context
    manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        test_timeout: float = DEFAULT_TEST_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        super().__init__(base_url, api_key, timeout, test_timeout, retries, backoff)
        self._verify = verify
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, transport=transport, verify=verify
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                resp = await self._http.request(call.method, call.path, **self._request_args(call))
            except httpx.TransportError as exc:
                if not self._retry_error(call, exc, attempt):
                    raise self._unreachable(exc) from exc
                await asyncio.sleep(self._delay(attempt, None))
            else:
                if not self._retry_status(call, resp, attempt):
                    return call.finish(resp, retried=attempt > 0)
                await asyncio.sleep(self._delay(attempt, resp))
            attempt += 1

    def proxy(self, connector_id: str, **options: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on the connector's proxy (``/api/v1/connectors/{id}/proxy/``),
        authenticated with this client's key (which needs ``connectors:use``): a request to
        ``"v1/items"`` reaches the connector's endpoint followed by ``v1/items``, with the
        connector's credentials added by the server, which the caller never sees.
        ``options`` go to the httpx client (``timeout``, ``headers``, ``transport``...).
        The upstream's answers come back as they are; the proxy's own failures are
        problem documents (502, 504 for a timeout, 405 for a method the connector does
        not allow): :func:`connectord.client.error_from_response` turns one into the
        core's error. Close it when done (``with client.proxy(id) as http: ...``)."""
        return httpx.AsyncClient(**self._proxy_args(connector_id, self._verify, options))

    # connectors
    async def list_connectors(
        self, connector_type: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[ConnectorInfo]:
        """Every matching connector, fetched a page at a time as the iteration goes."""
        cursor: str | None = None
        while True:
            page = await self._run(Calls.list_page(connector_type, status, page_size, cursor))
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list_connectors_page(
        self,
        connector_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[ConnectorInfo]:
        """One keyset page; pass its ``next_cursor`` to get the next."""
        return await self._run(Calls.list_page(connector_type, status, limit, cursor))

    async def get_connector(self, connector_id: str) -> ConnectorInfo | None:
        """A connector, or ``None`` if there is none with this id."""
        return await self._run(Calls.get(connector_id))

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
        """Register a connector; secrets in ``config`` are stored write-only. ``check_interval``
        (seconds, ``0``: no scheduled checks) and ``failure_threshold`` override the server's
        defaults for it."""
        body = definition(name, connector_type, endpoint, config, metadata, check_interval, failure_threshold)
        return await self._run(Calls.register(body))

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
        """Change the fields given; ``None`` if there is no such connector (``None`` for
        ``check_interval`` or ``failure_threshold`` puts back the server's default)."""
        body = changes(name, endpoint, config, metadata, status, check_interval, failure_threshold)
        return await self._run(Calls.update(connector_id, body, if_version))

    async def delete_connector(self, connector_id: str, if_version: int | None = None) -> bool:
        """Delete a connector; ``False`` if there was none."""
        return await self._run(Calls.delete(connector_id, if_version))

    async def test_connector(self, connector_id: str) -> TestResult:
        """Test a connector now (a failed connection is ``success=False``, not an exception)."""
        return await self._run(Calls.test(connector_id))

    async def test_definition(
        self,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TestResult:
        """Test an unsaved definition; nothing is stored."""
        body = definition(name, connector_type, endpoint, config, metadata)
        return await self._run(Calls.test_definition(body))

    async def connector_types(self) -> list[dict[str, Any]]:
        """Every type: name, description, capabilities and config JSON Schema."""
        return await self._run(Calls.types())

    async def history(
        self, connector_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[TestResult]:
        """Past test results of a connector, newest first."""
        return await self._run(Calls.history(connector_id, limit, cursor))

    async def secret_states(self, connector_id: str) -> dict[str, SecretState]:
        """Each stored secret's fingerprint and, for a reference, the reference; never a value."""
        return await self._run(Calls.secret_states(connector_id))

    async def fingerprint_secrets(self, connector_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """The fingerprints ``values`` would have as the connector's secrets (nothing is stored),
        to compare with :meth:`secret_states`; needs ``connectors:write``."""
        return await self._run(Calls.fingerprint_secrets(connector_id, values))

    async def audit(
        self, limit: int = 100, cursor: str | None = None, connector_id: str | None = None
    ) -> Page[AuditEvent]:
        """The tenant's audit events, newest first."""
        return await self._run(Calls.audit(limit, cursor, connector_id))

    @overload
    async def health(self, connector_id: str) -> HealthSummary: ...

    @overload
    async def health(self, *, wait: float = 0.0) -> dict[str, Any]: ...

    async def health(
        self, connector_id: str | None = None, *, wait: float = 0.0
    ) -> HealthSummary | dict[str, Any]:
        """With a connector id, that connector's health summary; without, the server's
        liveness answer (with ``wait``, keep trying that long while it is unreachable)."""
        if connector_id is not None:
            return await self._run(Calls.connector_health(connector_id))
        deadline = time.monotonic() + wait
        while True:
            try:
                return await self._run(Calls.health(self.root_url))
            except TransportError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(WAIT_STEP)

    async def start_bulk_test(
        self, connector_type: str | None = None, status: str | None = None, concurrency: int | None = None
    ) -> BulkTest:
        """Start testing every matching connector on the server; poll :meth:`bulk_test`."""
        return await self._run(Calls.start_bulk_test(connector_type, status, concurrency))

    async def bulk_test(self, bulk_id: str) -> BulkTest | None:
        """A bulk test's progress and, once over, its summary; ``None`` if there is none."""
        return await self._run(Calls.bulk_test(bulk_id))

    # use (docs/use.md; the key needs ``connectors:use``)
    async def credentials(self, connector_id: str) -> Checkout:
        """Check the connector's credentials out: its endpoint and config with every secret
        revealed, and a DSN where the type has one (sql, stream). Audited on the server; keep
        the answer in memory only. ``http`` and ``mcp`` connectors are refused
        (:class:`~connectord.errors.NotCheckedOutError`): use :meth:`proxy` and the MCP gateway."""
        return await self._run(Calls.credentials(connector_id))

    # admin (needs a key with the ``admin`` scope)
    async def create_tenant(self, name: str) -> NewTenant:
        """A new tenant and its first API key."""
        return await self._run(Calls.create_tenant(name))

    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant."""
        return await self._run(Calls.list_tenants())

    async def update_tenant(self, tenant_id: str, *, checkout_enabled: bool | None = None) -> TenantRecord:
        """Change a tenant's settings: ``checkout_enabled=False`` turns credential checkout
        off for the whole tenant (``docs/use.md``)."""
        return await self._run(Calls.update_tenant(tenant_id, checkout_enabled))

    async def create_key(
        self,
        tenant_id: str,
        name: str = "key",
        scopes: Sequence[str] = TENANT_SCOPES,
        *,
        connector_ids: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> NewKey:
        """A new API key for a tenant; ``connector_ids`` and ``selector`` (``{"team":
        "payments"}``) narrow it to those connectors (``docs/use.md``)."""
        return await self._run(Calls.create_key(tenant_id, name, scopes, connector_ids, selector))

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's keys (never their values)."""
        return await self._run(Calls.list_keys(tenant_id))

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Revoke a key; ``False`` if the tenant has no such key."""
        return await self._run(Calls.revoke_key(tenant_id, key_id))

    # webhooks (docs/webhooks.md; the key needs ``connectors:write``)
    async def create_webhook(
        self,
        url: str,
        events: Sequence[str] | None = None,
        description: str = "",
        enabled: bool = True,
    ) -> NewWebhook:
        """Register a receiver for ``events`` (every type when ``None``); the answer carries
        the signing secret, shown this once."""
        return await self._run(Calls.create_webhook(webhook_body(url, events, description, enabled)))

    async def list_webhooks(self, limit: int = 100, cursor: str | None = None) -> Page[WebhookInfo]:
        """One page of the tenant's webhooks (never their secrets)."""
        return await self._run(Calls.list_webhooks(limit, cursor))

    async def get_webhook(self, webhook_id: str) -> WebhookInfo | None:
        """A webhook, or ``None`` if there is none with this id."""
        return await self._run(Calls.get_webhook(webhook_id))

    async def update_webhook(
        self,
        webhook_id: str,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        if_version: int | None = None,
    ) -> WebhookInfo | None:
        """Change the fields given (``enabled=False`` pauses it); ``None`` if there is no such webhook."""
        body = webhook_body(url, events, description, enabled)
        return await self._run(Calls.update_webhook(webhook_id, body, if_version))

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Delete a webhook; ``False`` if there was none."""
        return await self._run(Calls.delete_webhook(webhook_id))

    async def webhook_deliveries(
        self, webhook_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page[DeliveryInfo]:
        """A webhook's deliveries, newest first: status, attempts, the last answer."""
        return await self._run(Calls.webhook_deliveries(webhook_id, limit, cursor))
