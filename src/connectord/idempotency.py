"""Idempotent registration: a retry with the same ``Idempotency-Key`` gets the first result.

A key is remembered for :data:`IDEMPOTENCY_TTL` with a fingerprint of the request
it came with; the same key with another request is refused, so a client bug
cannot silently return an unrelated connector.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from connectord.errors import FieldError, ValidationError
from connectord.model import ConnectorInfo, utcnow
from connectord.secrets import KeyRing
from connectord.store.base import IdempotencyRecord, Store

IDEMPOTENCY_TTL = timedelta(hours=24)
_FIELD = ("header", "Idempotency-Key")


def new_record(key: str, request: list[Any], keyring: KeyRing) -> IdempotencyRecord:
    """A record of this key and a keyed fingerprint of the request (which may hold
    secrets: only the fingerprint is stored); the response is filled in later."""
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise ValidationError(
            "invalid Idempotency-Key", [FieldError(_FIELD, "must be 1-200 printable characters")]
        )
    text = json.dumps(request, sort_keys=True, default=str)
    return IdempotencyRecord(key, keyring.fingerprint(text.encode()), "", utcnow())


def with_response(record: IdempotencyRecord, info: ConnectorInfo) -> IdempotencyRecord:
    """The record, holding the answer a retry will get."""
    return dataclasses.replace(record, response=json.dumps(info.to_dict()))


async def replay(store: Store, tenant_id: str, record: IdempotencyRecord) -> ConnectorInfo | None:
    """The first result recorded under this key, if any (an expired one is forgotten)."""
    first = await store.get_idempotency(tenant_id, record.key)
    if first is None:
        return None
    if utcnow() - first.created_at > IDEMPOTENCY_TTL:
        await store.delete_idempotency(tenant_id, record.key)
        return None
    if first.request_hash != record.request_hash:
        raise ValidationError(
            "Idempotency-Key reused with a different request",
            [FieldError(_FIELD, "was already used with a different request")],
        )
    return ConnectorInfo.from_dict(json.loads(first.response))
