"""Secret fingerprints and references: what ``export`` and ``apply --dry-run`` may know of a
stored secret without reading it back (``docs/secrets.md``, "Fingerprints").

A fingerprint is a keyed hash (:meth:`connectord.secrets.KeyRing.secret_fingerprint`). The
server makes them; a client compares them: the fingerprints of what is stored
(:func:`stored_states`) against the fingerprints the server makes of the values a file
declares (:func:`candidate_fingerprints`), which are never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectord.errors import FieldError, ValidationError
from connectord.model import ConnectorInfo, SecretState
from connectord.secret_refs import MAX_VALUE_BYTES, references_in
from connectord.secrets import KeyRing, SecretTree

#: At most this many values per request: a connector has a handful of secrets.
MAX_CANDIDATES = 64
_MAX_FIELD_CHARS = 200


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            found.update(_leaves(value, f"{prefix}{key}."))
        elif value is not None:
            found[f"{prefix}{key}"] = str(value)
    return found


def stored_states(keyring: KeyRing, info: ConnectorInfo, tree: SecretTree) -> dict[str, SecretState]:
    """Each stored secret's fingerprint, and its reference when it is one, by dotted name."""
    refs = references_in(tree)
    return {
        name: SecretState(
            keyring.secret_fingerprint(info.tenant_id, info.id, name, value),
            str(refs[name]) if name in refs else None,
        )
        for name, value in sorted(_leaves(tree).items())
    }


def check_candidates(values: object) -> dict[str, str]:
    """``values`` as ``{dotted field name: value}``, or :class:`ValidationError` saying what is wrong."""
    if not isinstance(values, Mapping):
        raise ValidationError(
            "values must be an object of field names to values",
            [FieldError(("values",), "must be an object")],
        )
    if len(values) > MAX_CANDIDATES:
        raise ValidationError(
            f"at most {MAX_CANDIDATES} values at once", [FieldError(("values",), f"at most {MAX_CANDIDATES}")]
        )
    errors: list[FieldError] = []
    for name, value in values.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_FIELD_CHARS:
            errors.append(FieldError(("values",), f"a field name is 1 to {_MAX_FIELD_CHARS} characters"))
        elif not isinstance(value, str):
            errors.append(FieldError(("values", name), "must be a string"))
        elif len(value.encode()) > MAX_VALUE_BYTES:
            errors.append(FieldError(("values", name), f"at most {MAX_VALUE_BYTES} bytes"))
    if errors:
        raise ValidationError("invalid values to fingerprint", errors)
    return {str(k): str(v) for k, v in values.items()}


def candidate_fingerprints(
    keyring: KeyRing, info: ConnectorInfo, values: Mapping[str, str]
) -> dict[str, str]:
    """The fingerprints ``values`` would have if they were the connector's stored secrets."""
    return {name: keyring.secret_fingerprint(info.tenant_id, info.id, name, v) for name, v in values.items()}
