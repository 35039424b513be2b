"""connectord: a multi-tenant connector registry that really tests each connector.

The names are imported on first use (PEP 562), so that importing a part of the
package (``connectord.client``, the CLI's ``--version``) does not load the
facade, the store and their dependencies.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from connectord.errors import (
        AuthenticationError,
        CheckoutDisabledError,
        ConfigurationError,
        ConflictError,
        ConnectordError,
        DuplicateNameError,
        InvalidTransitionError,
        NotCheckedOutError,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        ProbeError,
        RateLimitedError,
        SecretsError,
        StoreError,
        TransportError,
        UnknownConnectorTypeError,
        ValidationError,
        VersionConflictError,
    )
    from connectord.facade import ConnectorsFacade, get_connectors_facade
    from connectord.model import (
        AuditEvent,
        BuiltinType,
        BulkTest,
        Capability,
        Checkout,
        ConnectorInfo,
        ConnectorStatus,
        ErrorKind,
        HealthSummary,
        InUse,
        Page,
        Reach,
        Scope,
        TestResult,
    )
    from connectord.settings import Settings

#: Each public name and the module that defines it.
_EXPORTS = {
    "AuditEvent": "connectord.model",
    "AuthenticationError": "connectord.errors",
    "BuiltinType": "connectord.model",
    "BulkTest": "connectord.model",
    "Capability": "connectord.model",
    "Checkout": "connectord.model",
    "CheckoutDisabledError": "connectord.errors",
    "ConfigurationError": "connectord.errors",
    "ConflictError": "connectord.errors",
    "ConnectorInfo": "connectord.model",
    "ConnectorStatus": "connectord.model",
    "ConnectordError": "connectord.errors",
    "ConnectorsFacade": "connectord.facade",
    "DuplicateNameError": "connectord.errors",
    "ErrorKind": "connectord.model",
    "HealthSummary": "connectord.model",
    "InUse": "connectord.model",
    "InvalidTransitionError": "connectord.errors",
    "NotCheckedOutError": "connectord.errors",
    "NotFoundError": "connectord.errors",
    "Page": "connectord.model",
    "Reach": "connectord.model",
    "PayloadTooLargeError": "connectord.errors",
    "PermissionDeniedError": "connectord.errors",
    "ProbeError": "connectord.errors",
    "RateLimitedError": "connectord.errors",
    "Scope": "connectord.model",
    "SecretsError": "connectord.errors",
    "Settings": "connectord.settings",
    "StoreError": "connectord.errors",
    "TestResult": "connectord.model",
    "TransportError": "connectord.errors",
    "UnknownConnectorTypeError": "connectord.errors",
    "ValidationError": "connectord.errors",
    "VersionConflictError": "connectord.errors",
    "get_connectors_facade": "connectord.facade",
}

__all__ = [
    "AuditEvent",
    "AuthenticationError",
    "BuiltinType",
    "BulkTest",
    "Capability",
    "Checkout",
    "CheckoutDisabledError",
    "ConfigurationError",
    "ConflictError",
    "ConnectorInfo",
    "ConnectorStatus",
    "ConnectordError",
    "ConnectorsFacade",
    "DuplicateNameError",
    "ErrorKind",
    "HealthSummary",
    "InUse",
    "InvalidTransitionError",
    "NotCheckedOutError",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProbeError",
    "RateLimitedError",
    "Reach",
    "Scope",
    "SecretsError",
    "Settings",
    "StoreError",
    "TestResult",
    "TransportError",
    "UnknownConnectorTypeError",
    "ValidationError",
    "VersionConflictError",
    "get_connectors_facade",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
