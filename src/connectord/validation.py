"""Input checks shared by every caller of the facade: names, endpoints, metadata, configs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import pydantic

from connectord.errors import FieldError, ValidationError
from connectord.secrets import SecretTree, overlay
from connectord.types.base import ConnectorConfig, ConnectorType

_TENANT_RE = re.compile(r"^[\w.:-]{1,64}$")
NAME_RE = re.compile(r"^[\w][\w .:@/-]{0,199}$")
MAX_ENDPOINT = 2048
MAX_METADATA_BYTES = 16384
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def check_tenant_id(tenant_id: object) -> str:
    """A tenant id: 1-64 characters without spaces or control characters (library callers
    may use their own ids, such as ``"acme"``; the server's are UUIDs)."""
    if not isinstance(tenant_id, str) or not _TENANT_RE.match(tenant_id):
        raise ValidationError(
            "invalid tenant_id",
            [FieldError(("tenant_id",), "must be 1-64 characters: letters, digits, _ . : -")],
        )
    return tenant_id


def check_name(name: object, field: str = "name") -> str:
    """A connector or tenant name: 1-200 word characters, spaces and ``.:@/-``."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name != name.strip():
        raise ValidationError(
            f"invalid {field}",
            [
                FieldError(
                    (field,),
                    "must be 1-200 characters: letters, digits, spaces and _ . : @ / - "
                    "(starting with a letter, digit or _; no leading or trailing space)",
                )
            ],
        )
    return name


def split_endpoint(endpoint: object) -> tuple[str | None, str | None]:
    """Check an endpoint and move a password out of it: ``(endpoint, password)``."""
    if endpoint is None or endpoint == "":
        return None, None
    if not isinstance(endpoint, str) or len(endpoint) > MAX_ENDPOINT or _CONTROL.search(endpoint):
        raise ValidationError(
            "invalid endpoint",
            [
                FieldError(
                    ("endpoint",),
                    f"must be a URL or host:port of at most {MAX_ENDPOINT} characters, "
                    "without spaces or control characters",
                )
            ],
        )
    if "://" not in endpoint:
        return endpoint, None
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValidationError(
            "invalid endpoint", [FieldError(("endpoint",), "is not a valid URL (check the port)")]
        ) from None
    if parts.password is None:
        return endpoint, None
    return urlunsplit(_without_password(parts)), parts.password


def _without_password(parts: SplitResult) -> SplitResult:
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}@{host}" if user else host)


def check_metadata(metadata: object) -> dict[str, Any]:
    """Free-form labels: a JSON object of at most 16 KiB."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise ValidationError("invalid metadata", [FieldError(("metadata",), "must be a JSON object")])
    try:
        size = len(json.dumps(metadata))
    except (TypeError, ValueError):
        raise ValidationError(
            "invalid metadata", [FieldError(("metadata",), "must hold JSON values only")]
        ) from None
    if size > MAX_METADATA_BYTES:
        raise ValidationError(
            "invalid metadata",
            [FieldError(("metadata",), f"must be at most {MAX_METADATA_BYTES} bytes as JSON")],
        )
    return metadata


def check_config(ctype: ConnectorType, config: object, carried: SecretTree | None = None) -> ConnectorConfig:
    """Validate a config against the type's model, carrying stored secrets it omits.

    ``carried`` is the stored secret tree of an update: a secret the update does
    not mention is kept, one it sets to ``None`` is removed, and one the new
    config no longer has a field for (the auth kind changed) is dropped.
    """
    if not isinstance(config, dict):
        raise ValidationError("invalid config", [FieldError(("config",), "must be a JSON object")])
    carried = dict(carried or {})
    for _ in range(2):
        try:
            return ctype.config_model.model_validate(overlay(carried, config))
        except pydantic.ValidationError as exc:
            stale = [
                e["loc"]
                for e in exc.errors()
                if e["type"] == "extra_forbidden" and _has(carried, e["loc"]) and not _has(config, e["loc"])
            ]
            if not stale:
                raise ValidationError(
                    f"invalid config for a {ctype.name} connector",
                    [FieldError(("config", *e["loc"]), e["msg"]) for e in exc.errors(include_input=False)],
                ) from None
            for loc in stale:
                carried = _without(carried, loc)
    raise AssertionError("unreachable: stale secrets are dropped in one pass")


def _has(tree: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _without(tree: Mapping[str, Any], loc: tuple[str | int, ...]) -> dict[str, Any]:
    head, *rest = loc
    out = dict(tree)
    if not rest:
        out.pop(str(head), None)
    elif isinstance(out.get(str(head)), Mapping):
        out[str(head)] = _without(out[str(head)], tuple(rest))
    return out
