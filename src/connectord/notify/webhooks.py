"""The webhook resource: its checks, its signing secret, and the connector events.

The facade calls these (they sit beside :mod:`connectord.definitions` in the
layering). A webhook's URL is checked for form here (http or https, a host, no
credentials, no fragment); where it may connect is decided by the egress
policy at each delivery, as for a probe, because a name can resolve
differently tomorrow.

The signing secret (``whsec_...``) is made here, returned once by the create
call, and sealed with the key ring; the tenant and webhook ids are bound in as
associated data, so a sealed secret copied to another row does not open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from connectord.errors import FieldError, ValidationError
from connectord.model import ConnectorInfo, Event, EventType, WebhookInfo, new_id, utcnow
from connectord.notify.signing import new_secret
from connectord.secrets import Ciphertext, KeyRing

MAX_URL = 2048
MAX_DESCRIPTION = 500
#: Every event type a webhook may take, in a stable order.
EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
_CONTROL = {chr(c) for c in range(0x21)} | {"\x7f"}


def _invalid(field: tuple[str | int, ...], msg: str) -> ValidationError:
    return ValidationError(f"invalid {field[0]}", [FieldError(field, msg)])


def check_url(url: object) -> str:
    """A webhook URL: ``http`` or ``https``, a host, at most 2048 characters, no
    credentials (the signature authenticates a delivery), no fragment, no spaces."""
    if not isinstance(url, str) or not url:
        raise _invalid(("url",), "is required: an http:// or https:// URL")
    if len(url) > MAX_URL:
        raise _invalid(("url",), f"is longer than {MAX_URL} characters")
    if _CONTROL & set(url):
        raise _invalid(("url",), "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise _invalid(("url",), "is not a valid URL (check the port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _invalid(("url",), "must be an http:// or https:// URL")
    if not parts.hostname:
        raise _invalid(("url",), "needs a host")
    if parts.username is not None or parts.password is not None:
        raise _invalid(("url",), "must not carry credentials; receivers verify the signature instead")
    if parts.fragment or url.endswith("#"):
        raise _invalid(("url",), "must not have a fragment (it is never sent)")
    return url


def check_events(events: object) -> list[str]:
    """Event types, each known, without repeats (first occurrence kept); ``None`` means all."""
    if events is None:
        return list(EVENT_TYPES)
    if isinstance(events, str) or not isinstance(events, Sequence):
        raise _invalid(("events",), "must be a list of event types")
    if not events:
        raise _invalid(("events",), f"must name at least one event type: {', '.join(EVENT_TYPES)}")
    errors = [
        FieldError(("events", i), f"unknown event type; known: {', '.join(EVENT_TYPES)}")
        for i, kind in enumerate(events)
        if kind not in EVENT_TYPES
    ]
    if errors:
        raise ValidationError("invalid events", errors)
    return list(dict.fromkeys(str(kind) for kind in events))


def check_description(description: object) -> str:
    """Free text for people, at most 500 characters, no NUL."""
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise _invalid(("description",), f"must be text of at most {MAX_DESCRIPTION} characters")
    return description


def check_enabled(enabled: object) -> bool:
    """A true boolean (``1`` or ``"yes"`` are refused, not guessed)."""
    if not isinstance(enabled, bool):
        raise _invalid(("enabled",), "must be true or false")
    return enabled


def new_webhook(
    tenant_id: str, url: object, events: object, description: object, enabled: object
) -> tuple[WebhookInfo, str]:
    """A validated, unsaved webhook and its new signing secret."""
    info = WebhookInfo(
        id=new_id(),
        tenant_id=tenant_id,
        url=check_url(url),
        events=check_events(events),
        description=check_description(description),
        enabled=check_enabled(enabled),
        created_at=utcnow(),
        updated_at=None,
    )
    return info, new_secret()


def webhook_changes(current: WebhookInfo, given: Mapping[str, object]) -> dict[str, Any]:
    """The changed columns of an update (``given`` holds the fields sent, ``None`` for
    those not sent); nothing for a value as stored."""
    checks = {"url": check_url, "events": check_events, "description": check_description}
    changes: dict[str, Any] = {}
    for name, check in checks.items():
        value = given.get(name)
        if value is not None:
            checked = check(value)
            if checked != getattr(current, name):
                changes[name] = checked
    enabled = given.get("enabled")
    if enabled is not None and check_enabled(enabled) != current.enabled:
        changes["enabled"] = enabled
    return changes


def updated(current: WebhookInfo, changes: Mapping[str, Any]) -> WebhookInfo:
    """The webhook as an update leaves it."""
    return dataclasses.replace(current, **changes, version=current.version + 1)


def _aad(tenant_id: str, webhook_id: str) -> bytes:
    return f"connectord/v1/webhook/{tenant_id}/{webhook_id}".encode()


def seal_secret(keyring: KeyRing, secret: str, tenant_id: str, webhook_id: str) -> Ciphertext:
    """The signing secret, encrypted under the key ring's primary key."""
    return keyring.encrypt(secret.encode(), _aad(tenant_id, webhook_id))


def open_secret(keyring: KeyRing, sealed: Ciphertext, tenant_id: str, webhook_id: str) -> str:
    """The signing secret back (:class:`~connectord.errors.SecretsError` if it does not open)."""
    return keyring.decrypt(sealed, _aad(tenant_id, webhook_id)).decode()


# --- the connector events the facade emits ---------------------------------------------------

_INFO_FIELDS = frozenset(f.name for f in dataclasses.fields(ConnectorInfo))


def connector_event(kind: EventType, info: ConnectorInfo, changed: Iterable[str] = ()) -> Event:
    """``connector.created``, ``.updated`` (with the names of the changed fields) or
    ``.deleted``: the connector's public fields, as a read returns them (never a secret:
    ``config`` holds the public part only, ``secret_fields`` the names of the secrets)."""
    data: dict[str, Any] = {"connector": info.to_dict()}
    if kind is EventType.CONNECTOR_UPDATED:
        data["changed"] = sorted(set(changed) - {"updated_at"})
    return Event(kind, info.tenant_id, info.id, data)


def after_update(current: ConnectorInfo, changes: Mapping[str, Any]) -> ConnectorInfo:
    """The connector as a version-guarded update of ``current`` leaves it (the store
    applies ``changes`` to exactly that version, so this is what it will hold)."""
    fields = {k: v for k, v in changes.items() if k in _INFO_FIELDS}
    return dataclasses.replace(current, **fields, version=current.version + 1)
