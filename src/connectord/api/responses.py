"""Fast JSON responses built from the core's dataclasses (orjson, no re-validation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import orjson
from starlette.responses import Response

from connectord.model import ConnectorInfo, Page


class _Dictable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def etag(info: ConnectorInfo) -> str:
    """The strong ETag of a connector: its version, quoted."""
    return f'"{info.version}"'


def connector_response(
    info: ConnectorInfo, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A connector with its ETag."""
    return json_response(info.to_dict(), status, {"ETag": etag(info), **(headers or {})})


def page_response(page: Page[Any]) -> Response:
    """``{"items": [...], "next_cursor": ...}``."""
    return json_response({"items": _dicts(page.items), "next_cursor": page.next_cursor})


def _dicts(items: Iterable[_Dictable]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


def parse_if_match(value: str | None) -> int | None:
    """The version an ``If-Match`` header expects; ``None`` without one or for ``*``.

    A value that names no version of ours can never match, so it maps to -1
    (a stale version: 412).
    """
    if value is None or value.strip() == "*":
        return None
    tag = value.split(",")[0].strip().removeprefix("W/").strip('"')
    return int(tag) if tag.isdigit() and len(tag) < 12 else -1
