"""RFC 9457 problem documents: the one table from the core's errors to HTTP statuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from connectord import errors as e

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:connectord:problem:"

#: Error class -> (status, slug, title). Looked up along the class's MRO, so the
#: most specific entry wins; the SDK maps slugs back to the same classes.
PROBLEMS: dict[type[e.ConnectordError], tuple[int, str, str]] = {
    e.UnknownConnectorTypeError: (422, "unknown-connector-type", "Unknown connector type"),
    e.ValidationError: (422, "validation", "Invalid input"),
    e.NotFoundError: (404, "not-found", "Not found"),
    e.DuplicateNameError: (409, "duplicate-name", "Name already taken"),
    e.VersionConflictError: (412, "version-conflict", "Precondition failed: the version changed"),
    e.InvalidTransitionError: (409, "invalid-transition", "Status change not allowed"),
    e.ConflictError: (409, "conflict", "Conflict"),
    e.AuthenticationError: (401, "unauthorized", "Authentication required"),
    e.PermissionDeniedError: (403, "forbidden", "Missing scope"),
    e.RateLimitedError: (429, "rate-limited", "Too many requests"),
    e.PayloadTooLargeError: (413, "payload-too-large", "Request body too large"),
    e.StoreError: (503, "store-unavailable", "Store unavailable"),
    e.ConnectordError: (500, "internal", "Internal error"),
}

#: Statuses of problems that are not core errors (routing, framework).
HTTP_SLUGS: dict[int, tuple[str, str]] = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    415: ("unsupported-media-type", "Unsupported media type"),
    500: ("internal", "Internal error"),
}


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    if request_id:
        body["request_id"] = request_id
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def error_problem(exc: e.ConnectordError, request_id: str | None) -> Response:
    """The problem document of a core error."""
    status, slug, title = next(PROBLEMS[c] for c in type(exc).__mro__ if c in PROBLEMS)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, e.ValidationError):
        extra["errors"] = [fe.to_dict() for fe in exc.errors]
    if isinstance(exc, e.RateLimitedError):
        extra["retry_after"] = exc.retry_after
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.4999)))
    if isinstance(exc, e.VersionConflictError):
        extra["current_version"] = exc.current_version
    if isinstance(exc, e.AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="connectord"'
    detail = exc.message if status < 500 else title
    return problem(status, slug, title, detail, request_id=request_id, headers=headers or None, **extra)
