"""Input checks shared by every caller of the facade: names, endpoints, metadata, configs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pydantic

from connectord.errors import FieldError, ValidationError
from connectord.secrets import SecretTree, overlay
from connectord.types.base import ConnectorConfig, ConnectorType

_TENANT_RE = re.compile(r"^[\w.:-]{1,64}$")
NAME_RE = re.compile(r"^[\w][\w .:@/-]{0,199}$")
MAX_ENDPOINT = 2048
MAX_METADATA_BYTES = 16384
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def portable_json(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse JSON that parses but cannot be stored and served back: lone surrogates
    (not UTF-8), NUL characters, non-finite numbers and integers beyond 64 bits.
    Stored, such a value would make every later read of the connector, and of the
    tenant's list, fail to serialise. Raises ``ValueError`` (a pydantic validator)."""
    stack: list[Any] = [value]
    while stack:  # iterative: nesting may be as deep as the JSON parser allows
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item or (not item.isascii() and not _is_utf8(item)):
                raise ValueError("strings must be valid Unicode without NUL characters")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite")
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT_MIN <= item <= _INT_MAX:
            raise ValueError("integers must fit in 64 bits")
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _portable(value: dict[str, Any], field: str) -> dict[str, Any]:
    try:
        return portable_json(value)
    except ValueError as exc:
        raise ValidationError(f"invalid {field}", [FieldError((field,), str(exc))]) from None


def is_id(value: object) -> bool:
    """Whether a value can be an id this store gave (a lower-case UUID); others cannot exist."""
    return isinstance(value, str) and ID_RE.match(value) is not None


def check_tenant_id(tenant_id: object) -> str:
    """A tenant id: 1-64 characters without spaces or control characters (library callers
    may use their own ids, such as ``"acme"``; the server's are UUIDs)."""
    if not isinstance(tenant_id, str) or not _TENANT_RE.fullmatch(tenant_id):  # no trailing newline
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


def check_endpoint_text(endpoint: object) -> str | None:
    """An endpoint's general shape (a string of bounded length, no spaces or control
    characters); ``None`` for none. What each type accepts is checked by
    :func:`connectord.types.endpoint.split_credentials`."""
    if endpoint is None or endpoint == "":
        return None
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
    return endpoint


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
    return _portable(metadata, "metadata")


def check_config(ctype: ConnectorType, config: object, carried: SecretTree | None = None) -> ConnectorConfig:
    """Validate a config against the type's model, carrying stored secrets it omits.

    ``carried`` is the stored secret tree of an update: a secret the update does
    not mention is kept, one it sets to ``None`` is removed, and one the new
    config no longer has a field for (the auth kind changed) is dropped, as are
    the secrets of an object the new config leaves out (``auth`` omitted).
    """
    if not isinstance(config, dict):
        raise ValidationError("invalid config", [FieldError(("config",), "must be a JSON object")])
    _portable(config, "config")
    carried = dict(carried or {})
    while True:  # each pass drops at least one carried secret, so this ends
        merged = overlay(carried, config)
        try:
            # Strict, as JSON: "timeout": true is not 1.0, "tls_verify": "off" is not false.
            return ctype.config_model.model_validate_json(json.dumps(merged), strict=True)
        except pydantic.ValidationError as exc:
            found = (_stale(carried, config, _input_path(merged, e["loc"]), e["type"]) for e in exc.errors())
            stale = [p for p in found if p is not None]
            if not stale:
                raise ValidationError(
                    f"invalid config for a {ctype.name} connector",
                    [FieldError(("config", *e["loc"]), e["msg"]) for e in exc.errors(include_input=False)],
                ) from None
            for path in stale:
                carried = _without(carried, path)


def _stale(
    carried: Mapping[str, Any], config: Mapping[str, Any], path: tuple[str | int, ...], error: str
) -> tuple[str | int, ...] | None:
    """The carried secrets an error is about, if the update did not mention them:
    a secret the model no longer has, or an object that only carried secrets made."""
    node: Any = carried
    for depth, part in enumerate(path, 1):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
        if has_path(config, path[:depth]):
            continue
        if isinstance(node, Mapping) or (depth == len(path) and error == "extra_forbidden"):
            return path[:depth]
        return None
    return None


def _input_path(tree: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The path of an error in the input: ``loc`` without the union tags pydantic puts
    in it (``("auth", "bearer", "password")`` is ``auth.password`` in the input)."""
    path: list[str | int] = []
    for part in loc:
        if isinstance(tree, Mapping) and part in tree:
            path.append(part)
            tree = tree[part]
    return tuple(path) if path and path[-1] == loc[-1] else loc


def has_path(tree: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    """Whether ``tree`` holds something (``None`` included) at ``loc``."""
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
