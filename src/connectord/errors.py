"""The one exception tree of connectord.

Every layer raises these. Each class carries its problem ``slug``, HTTP
``status`` and ``title``: the REST API writes its problem documents from them
(``api/problems.py``) and the SDK maps problem documents back through
:func:`problem_classes`, so a caller sees the same class whichever way it
reaches the core. Slug and status of each class, and when it is raised::

    ConnectordError                500 internal           anything unexpected (the base)
    ├── ValidationError            422 validation         input does not validate (field-level ``errors``)
    │   └── UnknownConnectorTypeError  422 unknown-connector-type  the connector type is not registered
    ├── NotFoundError              404 not-found          the thing does not exist for this tenant
    ├── ConflictError              409 conflict           the request conflicts with the current state
    │   ├── DuplicateNameError     409 duplicate-name     a connector of that name exists in the tenant
    │   ├── VersionConflictError   412 version-conflict   the expected version is stale (``current_version``)
    │   ├── InvalidTransitionError 409 invalid-transition the status change is not allowed
    │   ├── NotProxyableError      409 not-proxyable      the connector's type cannot be proxied
    │   └── NotCheckedOutError     409 not-checked-out    the connector's type is used through the proxy
    │                                                     or the MCP gateway, never checked out
    ├── AuthenticationError        401 unauthorized       no valid API key
    ├── PermissionDeniedError      403 forbidden          the key lacks the scope
    │   └── CheckoutDisabledError  403 checkout-disabled  the tenant turned credential checkout off
    ├── RateLimitedError           429 rate-limited       a tenant limit was exceeded (``retry_after``)
    ├── PayloadTooLargeError       413 payload-too-large  a request body exceeds the limit
    ├── MethodNotAllowedError      405 method-not-allowed the connector's config does not allow the method
    ├── SecretsError               500 secrets            secrets cannot be encrypted or decrypted
    ├── ConfigurationError         500 configuration      the settings are unusable (raised at start)
    ├── StoreError                 503 store-unavailable  the store is unavailable or failed
    ├── NotReadyError              503 not-ready          the server cannot serve (``/readyz``: database,
    │                                                     schema, key ring or scheduler not ready)
    ├── ProbeError                 502 probe-failed       a connection to a connector failed in a known
    │   │                                                 way (``kind``; 504 for ``ErrorKind.TIMEOUT``)
    │   └── ProxyError             502 proxy-failed       the proxy could not get an answer from the
    │                                                     upstream (``kind``: egress_denied, refused,
    │                                                     timeout (504), tls, dns, auth, protocol...)
    └── TransportError             502 transport          the SDK could not reach the server, or the
                                                          connection broke (after any retries)

Messages never carry a secret value: every ``message`` is written by connectord
itself, never copied from user input or a driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectord.model import ErrorKind

#: A problem document's ``type`` is this prefix and the error class's ``slug``.
PROBLEM_TYPE_PREFIX = "urn:connectord:problem:"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field-level problem: where (``loc``) and what (``msg``)."""

    loc: tuple[str | int, ...]
    msg: str

    def to_dict(self) -> dict[str, object]:
        """The JSON form used in problem documents."""
        return {"loc": list(self.loc), "msg": self.msg}


class ConnectordError(Exception):
    """Base of every error connectord raises on purpose (and the SDK's answer to any
    error response it cannot place)."""

    #: The problem document's type is :data:`PROBLEM_TYPE_PREFIX` and this slug.
    slug = "internal"
    #: The HTTP status of the problem document.
    status = 500
    #: The problem document's title: fixed per class, safe to show anyone.
    title = "Internal error"
    #: Whether a 5xx still shows its ``message`` (a client error always does): most
    #: server errors show their title only, as their message may describe internals.
    public = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ConnectordError):
    """Raised when input (a config, a name, a filter) does not validate."""

    slug = "validation"
    status = 422
    title = "Invalid input"

    def __init__(self, message: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.errors: list[FieldError] = list(errors)


class UnknownConnectorTypeError(ValidationError):
    """Raised when a connector type name is not in the registry."""

    slug = "unknown-connector-type"
    title = "Unknown connector type"

    def __init__(self, name: str, known: Sequence[str], reason: str | None = None) -> None:
        if reason is None:
            msg = f"unknown connector type {name!r}; known types: {', '.join(sorted(known))}"
        else:
            msg = f"connector type {name!r} is unavailable: {reason}"
        super().__init__(msg, [FieldError(("connector_type",), msg)])
        self.name = name


class NotFoundError(ConnectordError):
    """Raised when a connector, tenant or key does not exist for the caller."""

    slug = "not-found"
    status = 404
    title = "Not found"


class ConflictError(ConnectordError):
    """Raised when a request conflicts with the current state."""

    slug = "conflict"
    status = 409
    title = "Conflict"


class DuplicateNameError(ConflictError):
    """Raised when a tenant already has a connector of that name."""

    slug = "duplicate-name"
    title = "Name already taken"


class VersionConflictError(ConflictError):
    """Raised when an update's expected version is not the current one."""

    slug = "version-conflict"
    status = 412
    title = "Precondition failed: the version changed"

    def __init__(self, message: str, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class InvalidTransitionError(ConflictError):
    """Raised when a status change (or a test of a deprecated connector) is refused."""

    slug = "invalid-transition"
    title = "Status change not allowed"


class NotProxyableError(ConflictError):
    """Raised when a connector of a type the proxy does not speak (not ``http``) is proxied."""

    slug = "not-proxyable"
    title = "This connector type cannot be proxied"


class NotCheckedOutError(ConflictError):
    """Raised when the credentials of an ``http`` or ``mcp`` connector are asked for: the
    proxy and the MCP gateway use those without letting a secret out."""

    slug = "not-checked-out"
    title = "This connector is used through the proxy or the gateway"


class AuthenticationError(ConnectordError):
    """Raised when no valid API key was given."""

    slug = "unauthorized"
    status = 401
    title = "Authentication required"


class PermissionDeniedError(ConnectordError):
    """Raised when the API key lacks the scope the operation needs."""

    slug = "forbidden"
    status = 403
    title = "Missing scope"


class CheckoutDisabledError(PermissionDeniedError):
    """Raised when a tenant that turned credential checkout off is asked for a checkout."""

    slug = "checkout-disabled"
    title = "Credential checkout is turned off"


class RateLimitedError(ConnectordError):
    """Raised when a tenant exceeds its rate or concurrency limit."""

    slug = "rate-limited"
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MethodNotAllowedError(ConnectordError):
    """Raised when a request's method is not allowed there: a proxied request's method
    the connector's config does not allow, or anything but POST on the MCP gateway
    (``allowed``: the methods that are, for the ``Allow`` header)."""

    slug = "method-not-allowed"
    status = 405
    title = "Method not allowed"

    def __init__(self, message: str, allowed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.allowed: list[str] = list(allowed)


class PayloadTooLargeError(ConnectordError):
    """Raised when a request body is larger than the configured limit."""

    slug = "payload-too-large"
    status = 413
    title = "Request body too large"


class SecretsError(ConnectordError):
    """Raised when a secret cannot be encrypted or decrypted (unknown key id, bad key)."""

    slug = "secrets"
    title = "Secrets unavailable"


class ConfigurationError(ConnectordError):
    """Raised at start when the settings are unusable or unsafe."""

    slug = "configuration"
    title = "Server misconfigured"


class StoreError(ConnectordError):
    """Raised when the store is unavailable or an operation on it failed."""

    slug = "store-unavailable"
    status = 503
    title = "Store unavailable"


class NotReadyError(ConnectordError):
    """Raised by the readiness check: the database does not answer in time, its schema is
    not at this release's head, the key ring is not loaded, or the scheduler is not running
    where it should. The message says which."""

    slug = "not-ready"
    status = 503
    title = "Not ready"
    #: The reason is connectord's own words (never a driver's text): operators need it.
    public = True


class ProbeError(ConnectordError):
    """Raised by a probe when the connection failed in a known way (``kind``).

    ``message`` is shown to the tenant: name the failure, never a secret or a trace.
    The probe runner turns it into a failed :class:`~connectord.model.TestResult`;
    where one reaches the API as an error (the proxy), it answers 502, or 504 for a
    timeout, and the SDK rebuilds it with its ``kind``.
    """

    slug = "probe-failed"
    status = 502
    title = "The connector could not be reached"
    public = True

    def __init__(self, kind: ErrorKind, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.details: dict[str, Any] = dict(details or {})
        if kind is ErrorKind.TIMEOUT:
            self.status = 504
            self.title = "The connector did not answer in time"


class ProxyError(ProbeError):
    """Raised by the HTTP proxy when it could not get an answer from the upstream: the
    egress policy refused the address or a redirect, the connection failed or timed out,
    the answer was too large, or no access token could be had (``kind`` says which). An
    answer the upstream did give, 4xx or 5xx, is passed through instead."""

    slug = "proxy-failed"
    title = "The proxy could not reach the upstream"

    def __init__(self, kind: ErrorKind, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(kind, message, details)
        if kind is ErrorKind.TIMEOUT:
            self.title = "The upstream did not answer in time"


class TransportError(ConnectordError):
    """Raised by the SDK when the server cannot be reached or the connection broke
    (after any retries)."""

    slug = "transport"
    status = 502
    title = "Connection failed"


def problem_classes() -> dict[str, type[ConnectordError]]:
    """Each slug and the class of this module that declares it, base classes first
    (the SDK's reverse map). A subclass made elsewhere (a plugin's) shares its
    parent's slug and is not listed: the parent stands for it."""
    found: dict[str, type[ConnectordError]] = {}
    pending: list[type[ConnectordError]] = [ConnectordError]
    while pending:
        cls = pending.pop(0)
        if cls.__module__ == __name__ and "slug" in vars(cls):
            found.setdefault(cls.slug, cls)
        pending.extend(cls.__subclasses__())
    return found
