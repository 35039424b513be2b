"""Problem documents mapped back to the core's exception classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connectord.errors import (
    AuthenticationError,
    ConflictError,
    ConnectordError,
    DuplicateNameError,
    FieldError,
    InvalidTransitionError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    StoreError,
    UnknownConnectorTypeError,
    ValidationError,
    VersionConflictError,
)

PROBLEM_PREFIX = "urn:connectord:problem:"


class TransportError(ConnectordError):
    """Raised when the server cannot be reached or the connection broke (after any retries)."""


_SLUGS: dict[str, type[ConnectordError]] = {
    "validation": ValidationError,
    "unknown-connector-type": UnknownConnectorTypeError,
    "not-found": NotFoundError,
    "duplicate-name": DuplicateNameError,
    "invalid-transition": InvalidTransitionError,
    "conflict": ConflictError,
    "version-conflict": VersionConflictError,
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDeniedError,
    "rate-limited": RateLimitedError,
    "payload-too-large": PayloadTooLargeError,
    "store-unavailable": StoreError,
    "internal": ConnectordError,
}
_STATUSES: dict[int, type[ConnectordError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: VersionConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
    503: StoreError,
}


def problem_of(resp: httpx.Response) -> dict[str, Any]:
    if "json" not in resp.headers.get("content-type", ""):
        return {}
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def slug_of(problem: Mapping[str, Any]) -> str | None:
    kind = problem.get("type")
    if isinstance(kind, str) and kind.startswith(PROBLEM_PREFIX):
        return kind[len(PROBLEM_PREFIX) :]
    return None


def retry_after_of(resp: httpx.Response, problem: Mapping[str, Any]) -> float | None:
    value = problem.get("retry_after", resp.headers.get("retry-after"))
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def error_from_response(resp: httpx.Response, sent: Mapping[str, Any] | None = None) -> ConnectordError:
    """The core exception an error response stands for (problem slug first, else the status).

    ``sent`` is the JSON body of the request, used to name the connector type
    of an :class:`UnknownConnectorTypeError`.
    """
    problem = problem_of(resp)
    slug = slug_of(problem)
    cls = _SLUGS.get(slug or "") or _STATUSES.get(resp.status_code, ConnectordError)
    detail = problem.get("detail") or problem.get("title")
    message = str(detail) if detail else f"the server answered {resp.status_code} {resp.reason_phrase}"
    errors = [
        FieldError(tuple(e.get("loc") or ()), str(e.get("msg", "")))
        for e in problem.get("errors") or ()
        if isinstance(e, Mapping)
    ]
    exc: ConnectordError
    if cls is UnknownConnectorTypeError:
        # Its constructor builds the message from (name, known); the server already did.
        unknown = UnknownConnectorTypeError.__new__(UnknownConnectorTypeError)
        ValidationError.__init__(unknown, message, errors)
        unknown.name = str((sent or {}).get("connector_type", ""))
        exc = unknown
    elif issubclass(cls, ValidationError):
        exc = cls(message, errors)
    elif issubclass(cls, VersionConflictError):
        current = problem.get("current_version")
        exc = cls(message, int(current) if isinstance(current, int) else None)
    elif issubclass(cls, RateLimitedError):
        exc = cls(message, retry_after_of(resp, problem) or 1.0)
    else:
        exc = cls(message)
    return exc
