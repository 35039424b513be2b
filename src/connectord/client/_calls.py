"""Every API call written once, as data: what to send and how to read the answer.

Nothing here does I/O; :class:`~connectord.client.Client` and
:class:`~connectord.client.AsyncClient` only differ in how they send a call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from connectord.client._errors import error_from_response, problem_of, slug_of
from connectord.client._models import (
    ApiKey,
    NewKey,
    NewTenant,
    NewWebhook,
    api_key_from_dict,
    audit_from_dict,
    bulk_test_from_dict,
    checkout_from_dict,
    connector_from_dict,
    delivery_from_dict,
    health_from_dict,
    result_from_dict,
    secret_states_from_dict,
    tenant_from_dict,
    webhook_from_dict,
)
from connectord.errors import ConnectordError
from connectord.model import (
    UNSET,
    AuditEvent,
    BulkTest,
    Checkout,
    ConnectorInfo,
    DeliveryInfo,
    HealthSummary,
    Page,
    Reach,
    SecretState,
    TenantRecord,
    TestResult,
    Unset,
    WebhookInfo,
)

T = TypeVar("T")


def read_json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise ConnectordError(
            f"the server answered {resp.status_code} with a body that is not JSON"
        ) from None


def page_of(parse: Callable[[Mapping[str, Any]], T]) -> Callable[[httpx.Response], Page[T]]:
    def read(resp: httpx.Response) -> Page[T]:
        body = read_json(resp)
        return Page([parse(item) for item in body["items"]], body.get("next_cursor"))

    return read


def items_of(parse: Callable[[Mapping[str, Any]], T]) -> Callable[[httpx.Response], list[T]]:
    return lambda resp: [parse(item) for item in read_json(resp)["items"]]


@dataclass(slots=True)
class Call(Generic[T]):
    """One request and how to read its answer, independent of sync or async sending."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: bool = False
    slow: bool = False
    #: The value when the server says "not found" (``retried`` tells whether an
    #: earlier attempt may have landed); ``None`` means raise :class:`NotFoundError`.
    on_missing: Callable[[bool], T] | None = None

    def finish(self, resp: httpx.Response, retried: bool) -> T:
        if resp.is_success:
            return self.parse(resp)
        if (
            resp.status_code == 404
            and self.on_missing is not None
            and slug_of(problem_of(resp)) == "not-found"
        ):
            return self.on_missing(retried)
        raise error_from_response(resp, self.body)


def _id(value: str) -> str:
    return quote(value, safe="")


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _etag(version: int | None) -> dict[str, str]:
    return {"If-Match": f'"{version}"'} if version is not None else {}


def definition(
    name: str,
    connector_type: str,
    endpoint: str | None,
    config: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    check_interval: float | None = None,
    failure_threshold: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "connector_type": connector_type}
    if endpoint is not None:
        body["endpoint"] = endpoint
    if config is not None:
        body["config"] = dict(config)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body | _clean({"check_interval": check_interval, "failure_threshold": failure_threshold})


def changes(
    name: str | None,
    endpoint: str | None,
    config: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    status: str | None,
    check_interval: float | Unset | None = UNSET,
    failure_threshold: int | Unset | None = UNSET,
) -> dict[str, Any]:
    body: dict[str, Any] = _clean({"name": name, "endpoint": endpoint, "status": status})
    if config is not None:
        body["config"] = dict(config)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    # Sent as null, these go back to the server's default; left out, they stay.
    if not isinstance(check_interval, Unset):
        body["check_interval"] = check_interval
    if not isinstance(failure_threshold, Unset):
        body["failure_threshold"] = failure_threshold
    return body


def _connector(resp: httpx.Response) -> ConnectorInfo:
    return connector_from_dict(read_json(resp))


def _result(resp: httpx.Response) -> TestResult:
    return result_from_dict(read_json(resp))


class Calls:
    """Every API call, once. Each returns a :class:`Call`; nothing here does I/O."""

    @staticmethod
    def list_page(
        connector_type: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Call[Page[ConnectorInfo]]:
        params = _clean(
            {"connector_type": connector_type, "status": status, "limit": limit, "cursor": cursor}
        )
        return Call("GET", "connectors", page_of(connector_from_dict), params=params, retry=True)

    @staticmethod
    def get(connector_id: str) -> Call[ConnectorInfo | None]:
        return Call(
            "GET", f"connectors/{_id(connector_id)}", _connector, retry=True, on_missing=lambda _: None
        )

    @staticmethod
    def register(body: dict[str, Any]) -> Call[ConnectorInfo]:
        # One key per create, reused by its retries: the server returns the first result.
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        return Call("POST", "connectors", _connector, body=body, headers=headers, retry=True)

    @staticmethod
    def update(connector_id: str, body: dict[str, Any], if_version: int | None) -> Call[ConnectorInfo | None]:
        return Call(
            "PUT",
            f"connectors/{_id(connector_id)}",
            _connector,
            body=body,
            headers=_etag(if_version),
            # Unconditional, a replay could undo someone else's change made in between.
            retry=if_version is not None,
            on_missing=lambda _: None,
        )

    @staticmethod
    def delete(connector_id: str, if_version: int | None) -> Call[bool]:
        return Call(
            "DELETE",
            f"connectors/{_id(connector_id)}",
            lambda _: True,
            headers=_etag(if_version),
            retry=True,
            # Not found after a retry: the first attempt most likely deleted it.
            on_missing=lambda retried: retried,
        )

    @staticmethod
    def test(connector_id: str) -> Call[TestResult]:
        return Call("POST", f"connectors/{_id(connector_id)}/test", _result, slow=True)

    @staticmethod
    def test_definition(body: dict[str, Any]) -> Call[TestResult]:
        return Call("POST", "connectors/test", _result, body=body, slow=True)

    @staticmethod
    def types() -> Call[list[dict[str, Any]]]:
        return Call("GET", "connector-types", lambda r: list(read_json(r)["items"]), retry=True)

    @staticmethod
    def history(connector_id: str, limit: int, cursor: str | None) -> Call[Page[TestResult]]:
        return Call(
            "GET",
            f"connectors/{_id(connector_id)}/history",
            page_of(result_from_dict),
            params=_clean({"limit": limit, "cursor": cursor}),
            retry=True,
        )

    @staticmethod
    def audit(limit: int, cursor: str | None, connector_id: str | None) -> Call[Page[AuditEvent]]:
        params = _clean({"limit": limit, "cursor": cursor, "connector_id": connector_id})
        return Call("GET", "audit", page_of(audit_from_dict), params=params, retry=True)

    @staticmethod
    def create_tenant(name: str) -> Call[NewTenant]:
        def read(resp: httpx.Response) -> NewTenant:
            body = read_json(resp)
            return NewTenant(body["tenant_id"], body.get("name", name), body["key_id"], body["api_key"])

        return Call("POST", "tenants", read, body={"name": name})

    @staticmethod
    def list_tenants() -> Call[list[TenantRecord]]:
        return Call("GET", "tenants", items_of(tenant_from_dict), retry=True)

    @staticmethod
    def update_tenant(tenant_id: str, checkout_enabled: bool | None) -> Call[TenantRecord]:
        body = _clean({"checkout_enabled": checkout_enabled})
        return Call(
            "PUT",
            f"tenants/{_id(tenant_id)}",
            lambda r: tenant_from_dict(read_json(r)),
            body=body,
            retry=True,
        )

    @staticmethod
    def create_key(
        tenant_id: str,
        name: str,
        scopes: Sequence[str],
        connector_ids: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> Call[NewKey]:
        def read(resp: httpx.Response) -> NewKey:
            body = read_json(resp)
            reach = Reach.from_dict(body)
            return NewKey(body["key_id"], body["tenant_id"], body["api_key"], tuple(body["scopes"]), reach)

        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if connector_ids is not None:
            body["connector_ids"] = list(connector_ids)
        if selector is not None:
            body["selector"] = dict(selector)
        return Call("POST", f"tenants/{_id(tenant_id)}/keys", read, body=body)

    @staticmethod
    def list_keys(tenant_id: str) -> Call[list[ApiKey]]:
        return Call("GET", f"tenants/{_id(tenant_id)}/keys", items_of(api_key_from_dict), retry=True)

    @staticmethod
    def revoke_key(tenant_id: str, key_id: str) -> Call[bool]:
        return Call(
            "DELETE",
            f"tenants/{_id(tenant_id)}/keys/{_id(key_id)}",
            lambda _: True,
            retry=True,
            on_missing=lambda retried: retried,
        )

    @staticmethod
    def health(root_url: str) -> Call[dict[str, Any]]:
        # Liveness lives at the server root, outside the API prefix.
        return Call("GET", root_url + "healthz", lambda r: dict(read_json(r)), retry=True)

    # health summary and bulk tests (docs/health.md)
    @staticmethod
    def connector_health(connector_id: str) -> Call[HealthSummary]:
        return Call(
            "GET",
            f"connectors/{_id(connector_id)}/health",
            lambda r: health_from_dict(read_json(r)),
            retry=True,
        )

    # fingerprints of stored secrets (docs/secrets.md)
    @staticmethod
    def secret_states(connector_id: str) -> Call[dict[str, SecretState]]:
        return Call(
            "GET",
            f"connectors/{_id(connector_id)}/secrets",
            lambda r: secret_states_from_dict(read_json(r)),
            retry=True,
        )

    @staticmethod
    def fingerprint_secrets(connector_id: str, values: Mapping[str, str]) -> Call[dict[str, str]]:
        return Call(
            "POST",
            f"connectors/{_id(connector_id)}/secrets/fingerprints",
            lambda r: {str(k): str(v) for k, v in dict(read_json(r)["fingerprints"]).items()},
            body={"values": dict(values)},
            retry=True,
        )

    # use (docs/use.md)
    @staticmethod
    def credentials(connector_id: str) -> Call[Checkout]:
        # Not retried: each checkout is audited, and a lost answer is simply asked again.
        return Call(
            "POST", f"connectors/{_id(connector_id)}/credentials", lambda r: checkout_from_dict(read_json(r))
        )

    @staticmethod
    def start_bulk_test(
        connector_type: str | None, status: str | None, concurrency: int | None
    ) -> Call[BulkTest]:
        body = _clean({"connector_type": connector_type, "status": status, "concurrency": concurrency})
        # Not retried: a replay after a lost answer would start a second bulk test.
        return Call("POST", "connectors/bulk-test", lambda r: bulk_test_from_dict(read_json(r)), body=body)

    @staticmethod
    def bulk_test(bulk_id: str) -> Call[BulkTest | None]:
        return Call(
            "GET",
            f"bulk-tests/{_id(bulk_id)}",
            lambda r: bulk_test_from_dict(read_json(r)),
            retry=True,
            on_missing=lambda _: None,
        )

    # webhooks (docs/webhooks.md)
    @staticmethod
    def create_webhook(body: dict[str, Any]) -> Call[NewWebhook]:
        def read(resp: httpx.Response) -> NewWebhook:
            data = read_json(resp)
            return NewWebhook(webhook_from_dict(data), data["secret"])

        # Not retried: a replay after a lost answer would make a second webhook (and secret).
        return Call("POST", "webhooks", read, body=body)

    @staticmethod
    def list_webhooks(limit: int, cursor: str | None) -> Call[Page[WebhookInfo]]:
        params = _clean({"limit": limit, "cursor": cursor})
        return Call("GET", "webhooks", page_of(webhook_from_dict), params=params, retry=True)

    @staticmethod
    def get_webhook(webhook_id: str) -> Call[WebhookInfo | None]:
        return Call(
            "GET",
            f"webhooks/{_id(webhook_id)}",
            lambda r: webhook_from_dict(read_json(r)),
            retry=True,
            on_missing=lambda _: None,
        )

    @staticmethod
    def update_webhook(
        webhook_id: str, body: dict[str, Any], if_version: int | None
    ) -> Call[WebhookInfo | None]:
        return Call(
            "PUT",
            f"webhooks/{_id(webhook_id)}",
            lambda r: webhook_from_dict(read_json(r)),
            body=body,
            headers=_etag(if_version),
            retry=if_version is not None,
            on_missing=lambda _: None,
        )

    @staticmethod
    def delete_webhook(webhook_id: str) -> Call[bool]:
        return Call(
            "DELETE",
            f"webhooks/{_id(webhook_id)}",
            lambda _: True,
            retry=True,
            on_missing=lambda retried: retried,
        )

    @staticmethod
    def webhook_deliveries(webhook_id: str, limit: int, cursor: str | None) -> Call[Page[DeliveryInfo]]:
        return Call(
            "GET",
            f"webhooks/{_id(webhook_id)}/deliveries",
            page_of(delivery_from_dict),
            params=_clean({"limit": limit, "cursor": cursor}),
            retry=True,
        )


def webhook_body(
    url: str | None, events: Sequence[str] | None, description: str | None, enabled: bool | None
) -> dict[str, Any]:
    """The JSON body of a webhook create or update: the fields given."""
    body: dict[str, Any] = _clean({"url": url, "description": description, "enabled": enabled})
    if events is not None:
        body["events"] = list(events)
    return body
