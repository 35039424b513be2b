"""OpenAPI documentation of the problem responses every route may give."""

from __future__ import annotations

from typing import Any

from connectord.api.problems import PROBLEM_MEDIA_TYPE
from connectord.api.schemas import Problem

_DESCRIPTIONS = {
    401: "No valid API key.",
    403: "The API key lacks the scope.",
    404: "No such resource for this tenant.",
    409: "Conflict: a duplicate name, or a status change that is not allowed.",
    412: "The If-Match version is stale.",
    413: "The request body is too large.",
    422: "Invalid input; `errors` lists each field's problem.",
    429: "Rate or concurrency limit reached; see Retry-After.",
    500: "Internal error.",
    503: "The store is unavailable, or (/readyz) the server is not ready.",
}
_COMMON = (401, 403, 422, 500, 503)


def problems(*codes: int, common: bool = True) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting problem documents for these statuses (and, unless
    ``common`` is false, for those every authenticated route may answer)."""
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in sorted({*(_COMMON if common else ()), *codes})
    }
