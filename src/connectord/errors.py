"""The one exception tree of connectord.

Every layer raises these; the REST API maps them to problem documents through
one table (``api/app.py``) and the SDK maps problem documents back to them, so
a caller sees the same class whichever way it reaches the core::

    ConnectordError
    ├── ValidationError            input does not validate (field-level ``errors``)
    │   └── UnknownConnectorTypeError   the connector type is not registered
    ├── NotFoundError              the thing does not exist for this tenant
    ├── ConflictError              the request conflicts with the current state
    │   ├── DuplicateNameError     a connector of that name exists in the tenant
    │   ├── VersionConflictError   the expected version is stale
    │   └── InvalidTransitionError the status change is not allowed
    ├── AuthenticationError        no valid API key
    ├── PermissionDeniedError      the key lacks the scope
    ├── RateLimitedError           a tenant limit was exceeded (``retry_after``)
    ├── PayloadTooLargeError       a request body exceeds the limit
    ├── SecretsError               secrets cannot be encrypted or decrypted
    ├── ConfigurationError         the settings are unusable (raised at start)
    ├── StoreError                 the store is unavailable or failed
    └── ProbeError                 a probe's connection failed in a known way (``kind``)

Messages never carry a secret value: every ``message`` is written by connectord
itself, never copied from user input or a driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectord.model import ErrorKind


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field-level problem: where (``loc``) and what (``msg``)."""

    loc: tuple[str | int, ...]
    msg: str

    def to_dict(self) -> dict[str, object]:
        """The JSON form used in problem documents."""
        return {"loc": list(self.loc), "msg": self.msg}


class ConnectordError(Exception):
    """Base of every error connectord raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ConnectordError):
    """Raised when input (a config, a name, a filter) does not validate."""

    def __init__(self, message: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.errors: list[FieldError] = list(errors)


class UnknownConnectorTypeError(ValidationError):
    """Raised when a connector type name is not in the registry."""

    def __init__(self, name: str, known: Sequence[str], reason: str | None = None) -> None:
        if reason is None:
            msg = f"unknown connector type {name!r}; known types: {', '.join(sorted(known))}"
        else:
            msg = f"connector type {name!r} is unavailable: {reason}"
        super().__init__(msg, [FieldError(("connector_type",), msg)])
        self.name = name


class NotFoundError(ConnectordError):
    """Raised when a connector, tenant or key does not exist for the caller."""


class ConflictError(ConnectordError):
    """Raised when a request conflicts with the current state."""


class DuplicateNameError(ConflictError):
    """Raised when a tenant already has a connector of that name."""


class VersionConflictError(ConflictError):
    """Raised when an update's expected version is not the current one."""

    def __init__(self, message: str, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class InvalidTransitionError(ConflictError):
    """Raised when a status change (or a test of a deprecated connector) is refused."""


class AuthenticationError(ConnectordError):
    """Raised when no valid API key was given."""


class PermissionDeniedError(ConnectordError):
    """Raised when the API key lacks the scope the operation needs."""


class RateLimitedError(ConnectordError):
    """Raised when a tenant exceeds its rate or concurrency limit."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(ConnectordError):
    """Raised when a request body is larger than the configured limit."""


class SecretsError(ConnectordError):
    """Raised when a secret cannot be encrypted or decrypted (unknown key id, bad key)."""


class ConfigurationError(ConnectordError):
    """Raised at start when the settings are unusable or unsafe."""


class StoreError(ConnectordError):
    """Raised when the store is unavailable or an operation on it failed."""


class ProbeError(ConnectordError):
    """Raised by a probe when the connection failed in a known way (``kind``).

    ``message`` is shown to the tenant: name the failure, never a secret or a trace.
    The probe runner turns it into a failed :class:`~connectord.model.TestResult`.
    """

    def __init__(self, kind: ErrorKind, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.details: dict[str, Any] = dict(details or {})
