"""Problem documents mapped back to the core's exception classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connectord.errors import (
    PROBLEM_TYPE_PREFIX,
    ConnectordError,
    FieldError,
    ProbeError,
    RateLimitedError,
    TransportError,
    UnknownConnectorTypeError,
    ValidationError,
    VersionConflictError,
    problem_classes,
)
from connectord.model import ErrorKind

__all__ = ["TransportError", "error_from_response", "problem_of", "retry_after_of", "slug_of"]

_SLUGS = problem_classes()


def _by_status() -> dict[int, type[ConnectordError]]:
    """The class standing for a status when a response has no known slug (a proxy's,
    an older server's): the most general class of that status, since
    ``problem_classes`` lists bases first. A ProbeError needs its ``kind`` and a
    TransportError is the SDK's own, so neither stands for a bare 502 or 504."""
    statuses: dict[int, type[ConnectordError]] = {}
    for cls in _SLUGS.values():
        if not issubclass(cls, ProbeError | TransportError):
            statuses.setdefault(cls.status, cls)
    # The HTTP server's own plain-text 400 (malformed framing) is bad input too.
    statuses[400] = ValidationError
    return statuses


_STATUSES = _by_status()


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
    if isinstance(kind, str) and kind.startswith(PROBLEM_TYPE_PREFIX):
        return kind[len(PROBLEM_TYPE_PREFIX) :]
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
    elif issubclass(cls, ProbeError):
        exc = cls(_kind_of(problem), message)
    else:
        exc = cls(message)
    return exc


def _kind_of(problem: Mapping[str, Any]) -> ErrorKind:
    try:
        return ErrorKind(str(problem.get("kind")))
    except ValueError:
        return ErrorKind.INTERNAL
