"""One validation path for a connector's definition (endpoint + config), shared by
registration, update and the unsaved-definition test.

A definition is checked as a whole: the endpoint's general shape, the config
against the type's model (stored secrets carried in an update), then the
endpoint against what the type accepts (which may depend on the config, as a
``sql`` dialect does). Credentials written in the endpoint are moved into the
config's secrets on the way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic_core import to_jsonable_python

from connectord.errors import FieldError, ValidationError
from connectord.secrets import SecretTree, split_secrets
from connectord.types.base import ConnectorConfig, ConnectorType
from connectord.types.endpoint import check_user_alone, split_credentials
from connectord.types.registry import TypeRegistry
from connectord.validation import check_config, check_endpoint_text, has_path


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated definition: what is stored in clear, and the secrets to seal."""

    endpoint: str | None
    config: ConnectorConfig
    public: dict[str, Any]
    secrets: SecretTree
    capabilities: list[str]


def connector_type(registry: TypeRegistry, name: object) -> ConnectorType:
    """The registered type of this name (:class:`ValidationError` naming the field if none)."""
    if not isinstance(name, str):
        raise ValidationError("invalid connector_type", [FieldError(("connector_type",), "must be a string")])
    return registry.get(name)


def validate_definition(
    ctype: ConnectorType,
    endpoint: object,
    config: object,
    *,
    carried: SecretTree | None = None,
    stored: tuple[str | None, Mapping[str, Any]] | None = None,
) -> Definition:
    """Check a definition. In an update, ``carried`` are the stored secrets (see
    :func:`connectord.validation.check_config`) and ``stored`` the stored endpoint and
    public config: when the update sends the secrets somewhere else (another scheme,
    host or port, in the endpoint or in a URL of the config), every secret it keeps must
    be sent again (or removed with ``null``), so that write access never reads secrets."""
    given = text = check_endpoint_text(endpoint)
    moved: dict[str, str] = {}
    if text is not None:
        # The type's widest rule first: a password in the URL belongs in the config
        # before it is validated; the config's own rule (a provider's) narrows it after.
        text, moved = split_credentials(text, ctype.endpoint, ctype.name)
    incoming = dict(config) if isinstance(config, Mapping) else ({} if config is None else config)
    if isinstance(incoming, dict):
        for key, value in moved.items():
            incoming.setdefault(key, value)
    validated = check_config(ctype, incoming, carried=carried)
    rule = ctype.endpoint_rule(validated)
    if given is not None and text is not None:
        if rule != ctype.endpoint:
            split_credentials(given, rule, ctype.name)
        check_user_alone(text, rule, validated.password is not None)
    public, secrets = _split(validated)
    if stored is not None and secrets and destinations(text, public) != destinations(*stored):
        _check_sent_again(secrets, incoming if isinstance(incoming, Mapping) else {})
    return Definition(text, validated, public, secrets, ctype.capabilities(validated))


Destination = tuple[str, str, int | None]


def destinations(endpoint: str | None, public: Mapping[str, Any]) -> frozenset[Destination]:
    """Where a definition's secrets may be sent: the scheme, host and port of the endpoint
    and of every URL in the public config (an OAuth token URL, an S3 ``endpoint_url``)."""
    urls = [endpoint] if endpoint else []
    urls.extend(_config_urls(public))
    return frozenset(_destination(url) for url in urls)


def _config_urls(tree: Any) -> list[str]:
    if isinstance(tree, Mapping):
        return [url for value in tree.values() for url in _config_urls(value)]
    if isinstance(tree, list):
        return [url for value in tree for url in _config_urls(value)]
    return [tree] if isinstance(tree, str) and "://" in tree else []


def _destination(url: str) -> Destination:
    try:
        parts = urlsplit(url if "://" in url or url.startswith("/") else f"//{url}")
        port = parts.port
    except ValueError:
        return ("", url, None)
    return (parts.scheme.lower(), (parts.hostname or parts.path).lower(), port)


def _check_sent_again(secrets: SecretTree, incoming: Mapping[str, Any]) -> None:
    kept = [path for path in _leaf_paths(secrets) if not has_path(incoming, path)]
    if kept:
        raise ValidationError(
            "the update sends the connector's secrets to another destination: send them again "
            "(or null to remove them)",
            [
                FieldError(("config", *path), "must be sent again, as the destination changes")
                for path in kept
            ],
        )


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            paths.extend(_leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def _split(config: ConnectorConfig) -> tuple[dict[str, Any], SecretTree]:
    # Dumped in Python mode to keep the SecretStr values, then made JSON-safe: a type may
    # use URL, path or datetime fields, and the public part is stored and served as JSON.
    public, secrets = split_secrets(config.model_dump(mode="python", exclude_unset=True, exclude_none=True))
    return to_jsonable_python(public), secrets


# --- scheduled checks: a connector's own interval and failure threshold --------------------

#: The shortest check interval a connector may ask for, in seconds (``0`` aside: off).
MIN_CHECK_INTERVAL = 1.0
#: The longest: 30 days (a rarer check says little about health).
MAX_CHECK_INTERVAL = 30 * 86400.0
#: The largest failure threshold (failed checks in a row before ``connector.down``).
MAX_FAILURE_THRESHOLD = 1000


def check_check_interval(value: object) -> float | None:
    """A connector's ``check_interval``: ``None`` (the server's default), ``0`` (no
    scheduled checks) or seconds from :data:`MIN_CHECK_INTERVAL` to
    :data:`MAX_CHECK_INTERVAL`, fractions allowed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _schedule_error("check_interval", "must be a number of seconds")
    if value != 0 and not MIN_CHECK_INTERVAL <= value <= MAX_CHECK_INTERVAL:
        raise _schedule_error(
            "check_interval",
            f"must be 0 (off) or from {MIN_CHECK_INTERVAL:g} to {MAX_CHECK_INTERVAL:g} seconds",
        )
    return float(value)


def check_failure_threshold(value: object) -> int | None:
    """A connector's ``failure_threshold``: ``None`` (the server's default) or 1 to
    :data:`MAX_FAILURE_THRESHOLD` failed checks in a row."""
    if value is None:
        return None
    # A float that is a whole number (JSON 3.0) is that number; 2.5 failures is not.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _schedule_error("failure_threshold", "must be a whole number")
    if not 1 <= value <= MAX_FAILURE_THRESHOLD:
        raise _schedule_error("failure_threshold", f"must be from 1 to {MAX_FAILURE_THRESHOLD}")
    return value


def _schedule_error(field: str, msg: str) -> ValidationError:
    return ValidationError(f"invalid {field}", [FieldError((field,), msg)])
