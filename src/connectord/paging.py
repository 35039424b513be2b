"""Paging: page limits, offsets and the opaque keyset cursors the facade hands out."""

from __future__ import annotations

import base64
import binascii
import uuid

from connectord.errors import FieldError, ValidationError

#: The largest page a caller may ask for.
MAX_LIMIT = 1000


def check_offset(offset: int) -> int:
    """An offset: an integer, 0 or more."""
    if not isinstance(offset, int) or offset < 0:
        raise ValidationError("invalid offset", [FieldError(("offset",), "must be 0 or more")])
    return offset


def check_limit(limit: int, field: str = "limit") -> int:
    """A page size (or a bound such as a concurrency): an integer from 1 to :data:`MAX_LIMIT`."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"invalid {field}", [FieldError((field,), f"must be between 1 and {MAX_LIMIT}")]
        )
    return limit


def encode_cursor(last_id: str) -> str:
    """The cursor that continues after the row with this id."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The row id a cursor continues after (``None`` for the first page)."""
    if cursor is None or cursor == "":
        return None
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        canonical = str(uuid.UUID(value)) == value  # ids are UUIDs; anything else is forged
    except (binascii.Error, UnicodeDecodeError, ValueError):
        canonical = False
    if not canonical:
        raise ValidationError("invalid cursor", [FieldError(("cursor",), "is not a cursor this server gave")])
    return value
