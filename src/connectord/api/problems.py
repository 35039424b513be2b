"""RFC 9457 problem documents, written from the core's error classes.

Each class in ``connectord.errors`` carries its slug, status and title; every
problem document this server writes, here or in the middleware, takes them from
there, and the SDK reads them back from the same classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from connectord import errors as e

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = e.PROBLEM_TYPE_PREFIX

#: Statuses of problems that are not core errors (routing, framework); the core's
#: own (404, 500) come from their classes in ``connectord.errors``.
HTTP_SLUGS: dict[int, tuple[str, str]] = {
    404: (e.NotFoundError.slug, e.NotFoundError.title),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    415: ("unsupported-media-type", "Unsupported media type"),
    500: (e.ConnectordError.slug, e.ConnectordError.title),
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


def class_problem(
    cls: type[e.ConnectordError],
    detail: str,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The problem document of an error class, for answers written without an instance
    (a body over the limit, a request FastAPI refused before any route ran)."""
    return problem(cls.status, cls.slug, cls.title, detail, request_id=request_id, headers=headers, **extra)


def error_problem(exc: e.ConnectordError, request_id: str | None) -> Response:
    """The problem document of a core error."""
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
    if isinstance(exc, e.ProbeError):
        extra["kind"] = exc.kind.value
        extra["error_kind"] = exc.kind.value  # the name test results use (details.error_kind)
    if isinstance(exc, e.MethodNotAllowedError):
        headers["Allow"] = ", ".join(exc.allowed)
    detail = exc.message if exc.status < 500 or exc.public else exc.title
    return problem(
        exc.status, exc.slug, exc.title, detail, request_id=request_id, headers=headers or None, **extra
    )
