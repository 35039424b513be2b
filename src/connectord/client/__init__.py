"""The Python SDK: :class:`Client` (sync) and :class:`AsyncClient` over the REST API.

Both have the facade's methods without the tenant (the API key decides it),
return the core's types (:class:`~connectord.model.ConnectorInfo`,
:class:`~connectord.model.TestResult`, :class:`~connectord.model.AuditEvent`)
and raise the core's exception classes, mapped back from problem documents::

    from connectord.client import Client

    with Client("http://127.0.0.1:8080") as client:  # key from CONNECTORD_API_KEY
        info = client.register_connector("web", "custom", endpoint="127.0.0.1:8080")
        print(client.test_connector(info.id).success)

Each method is written once as a :class:`Call` (what to send, how to read the
answer); the two clients only differ in how they send it. Idempotent calls
(GET, PUT with ``If-Match``, DELETE, and POST /connectors with its
``Idempotency-Key``) are retried with backoff after a connection error or a
502/503/504. The API key is kept in the HTTP client's headers only: it is in
no ``repr`` and no exception text.
"""

from connectord.client._async import AsyncClient
from connectord.client._errors import TransportError, error_from_response
from connectord.client._models import (
    ApiKey,
    NewKey,
    NewTenant,
    NewWebhook,
    audit_from_dict,
    connector_from_dict,
    result_from_dict,
)
from connectord.client._sync import Client

__all__ = [
    "ApiKey",
    "AsyncClient",
    "Client",
    "NewKey",
    "NewTenant",
    "NewWebhook",
    "TransportError",
    "audit_from_dict",
    "connector_from_dict",
    "error_from_response",
    "result_from_dict",
]
