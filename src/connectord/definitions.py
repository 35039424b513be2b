"""One validation path for a connector's definition (endpoint + config), shared by
registration, update and the unsaved-definition test.

A definition is checked as a whole: the endpoint's general shape, the config
against the type's model (stored secrets carried in an update), then the
endpoint against what the type accepts (which may depend on the config, as a
``sql`` dialect does). Credentials written in the endpoint are moved into the
config's secrets on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from connectord.errors import FieldError, ValidationError
from connectord.secrets import SecretTree, split_secrets
from connectord.types.base import ConnectorConfig, ConnectorType
from connectord.types.registry import TypeRegistry
from connectord.validation import check_config, split_endpoint


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
    ctype: ConnectorType, endpoint: object, config: object, *, carried: SecretTree | None = None
) -> Definition:
    """Check a definition; ``carried`` are the stored secrets of an update (see
    :func:`connectord.validation.check_config`)."""
    endpoint, moved = split_endpoint(endpoint)
    incoming = dict(config) if isinstance(config, Mapping) else ({} if config is None else config)
    if isinstance(incoming, dict):
        for key, value in moved.items():
            incoming.setdefault(key, value)
    validated = check_config(ctype, incoming, carried=carried)
    public, secrets = _split(validated)
    return Definition(endpoint, validated, public, secrets, ctype.capabilities(validated))


def _split(config: ConnectorConfig) -> tuple[dict[str, Any], SecretTree]:
    # Dumped in Python mode to keep the SecretStr values, then made JSON-safe: a type may
    # use URL, path or datetime fields, and the public part is stored and served as JSON.
    public, secrets = split_secrets(config.model_dump(mode="python", exclude_unset=True, exclude_none=True))
    return to_jsonable_python(public), secrets
