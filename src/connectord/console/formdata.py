"""The values a generated form shows, and the config a posted form gives back.

A form's state (:class:`FormState`) comes from a stored config
(:func:`state_from_config`: public values as text, secrets only as "set") or
from a post shown again (:func:`state_from_form`: what was typed, never a
secret). :func:`parse_config` reads a post into the config the facade
validates, and :func:`place_errors` puts the facade's field-level errors beside
the fields they are about. The rules (secrets kept when left empty, defaults
left out) are in :mod:`connectord.console.forms`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectord.console.forms import Choice, Field, FormSpec, Group, Node
from connectord.errors import FieldError

_LIST_SPLIT = re.compile(r"[\s,]+")


class _Missing:
    """A value the posted form leaves out (the config omits the key)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FormData(Protocol):
    """What a posted form offers (Starlette's ``FormData``, or a plain multi-dict)."""

    def get(self, key: str, /) -> Any: ...

    def getlist(self, key: str, /) -> list[Any]: ...


@dataclass(slots=True)
class FormState:
    """What a rendered form shows: each input's text, which secrets are set, the errors."""

    #: By field key: a string, or a list of strings (checkboxes).
    values: dict[str, Any] = field(default_factory=dict)
    #: Keys of secret fields that hold a stored value; for secret pairs, ``key:name``.
    secrets_set: set[str] = field(default_factory=set)
    #: By node key (or a top-level field name): the messages to show beside it.
    errors: dict[str, list[str]] = field(default_factory=dict)
    #: Errors no field of the form stands for.
    general: list[str] = field(default_factory=list)

    def value(self, key: str, default: Any = "") -> Any:
        """The text of an input."""
        return self.values.get(key, default)

    def set_names(self, key: str) -> list[str]:
        """The names set in a secret-pairs field."""
        prefix = key + ":"
        return sorted(s[len(prefix) :] for s in self.secrets_set if s.startswith(prefix))


# --- a stored config, shown in the form -----------------------------------------------------


def state_from_config(spec: FormSpec, config: Mapping[str, Any], secret_fields: Sequence[str]) -> FormState:
    """The form filled from a stored config: public values as text, secrets only as "set"."""
    state = FormState()
    _fill(spec.nodes, config, set(secret_fields), state)
    return state


def _fill(nodes: Sequence[Node], config: Mapping[str, Any], secrets: set[str], state: FormState) -> None:
    for node in nodes:
        name = node.path[-1]
        dotted = ".".join(node.path)
        if isinstance(node, Group):
            inner = config.get(name)
            _fill(node.children, inner if isinstance(inner, Mapping) else {}, secrets, state)
        elif isinstance(node, Choice):
            inner = config.get(name)
            inner = inner if isinstance(inner, Mapping) else {}
            kind = inner.get(node.tag)
            if kind is None:
                kind = node.unset_kind or ""
            state.values[node.selector.key] = str(kind)
            for variant in node.variants:
                if variant.kind == kind:
                    _fill(variant.group.children, inner, secrets, state)
        elif node.widget == "password":
            if dotted in secrets:
                state.secrets_set.add(node.key)
        elif node.widget == "secret_pairs":
            prefix = dotted + "."
            state.secrets_set.update(
                f"{node.key}:{s[len(prefix) :]}" for s in secrets if s.startswith(prefix)
            )
        elif name in config:
            state.values[node.key] = _as_text(node, config[name])


def _as_text(node: Field, value: Any) -> Any:
    if node.widget == "checkbox":
        return bool(value)
    if node.widget == "tristate":
        return "" if value is None else ("true" if value else "false")
    if node.widget == "checkboxes":
        return [str(v) for v in value] if isinstance(value, list) else []
    if node.widget == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else ""
    if node.widget == "pairs":
        return "\n".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, Mapping) else ""
    if node.widget == "json":
        return json.dumps(value, indent=2)
    return "" if value is None else str(value)


def state_from_form(
    spec: FormSpec, form: FormData, stored: Mapping[str, Any] | None = None, secret_fields: Sequence[str] = ()
) -> FormState:
    """The form as posted, to show again (with its errors): every value but the secrets,
    which show as set when the stored connector (``stored``, ``secret_fields``) has them."""
    state = state_from_config(spec, stored or {}, secret_fields)
    for node in spec.walk():
        if isinstance(node, Field) and not node.secret:
            if node.widget == "checkboxes":
                state.values[node.key] = [str(v) for v in form.getlist(node.key)]
            elif node.widget == "checkbox":
                state.values[node.key] = form.get(node.key) is not None
            else:
                state.values[node.key] = str(form.get(node.key) or "")
    # The stored secrets are as stored; what the person typed is not shown back.
    return state


# --- a posted form, read back into a config ---------------------------------------------------


def parse_config(
    spec: FormSpec, form: FormData, stored: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The config a posted form gives, and the errors of inputs that could not be read
    (by field key). ``stored`` is the stored public config of an edit: a key it holds is
    kept even at its default value."""
    errors: dict[str, list[str]] = {}
    config = _parse_nodes(spec.nodes, form, stored or {}, errors)
    return config, errors


def _parse_nodes(
    nodes: Sequence[Node], form: FormData, stored: Mapping[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in nodes:
        name = node.path[-1]
        inner = stored.get(name)
        inner = inner if isinstance(inner, Mapping) else {}
        if isinstance(node, Group):
            value: Any = _parse_nodes(node.children, form, inner, errors)
            if not value and not node.required and name not in stored:
                value = MISSING
        elif isinstance(node, Choice):
            value = _parse_choice(node, form, stored, errors)
        else:
            try:
                value = _parse_field(node, form)
            except ValueError as exc:
                errors.setdefault(node.key, []).append(str(exc))
                continue
            if value is not MISSING and not node.secret and value == node.default and name not in stored:
                value = MISSING  # the default, not chosen: left to the type
            elif value is MISSING and node.widget == "secret_pairs" and name in stored:
                value = {}  # as stored (its secrets kept): the config stays the same
        if value is not MISSING:
            out[name] = value
    return out


def _parse_choice(
    node: Choice, form: FormData, stored: Mapping[str, Any], errors: dict[str, list[str]]
) -> Any:
    kind = str(form.get(node.selector.key) or "")
    name = node.path[-1]
    if not kind:
        return MISSING
    variant = next((v for v in node.variants if v.kind == kind), None)
    if variant is None:
        errors.setdefault(node.selector.key, []).append(
            f"must be one of {', '.join(v.kind for v in node.variants)}"
        )
        return MISSING
    inner = stored.get(name)
    inner = inner if isinstance(inner, Mapping) and inner.get(node.tag) == kind else {}
    values = _parse_nodes(variant.group.children, form, inner, errors)
    if kind == node.unset_kind and not values and name not in stored:
        return MISSING
    return {node.tag: kind, **values}


def _parse_field(node: Field, form: FormData) -> Any:
    widget = node.widget
    if widget == "checkbox":
        return form.get(node.key) is not None
    if widget == "checkboxes":
        allowed = {v for v, _ in node.choices}
        picked = [str(v) for v in form.getlist(node.key)]
        if any(v not in allowed for v in picked):
            raise ValueError(f"each must be one of {', '.join(sorted(allowed))}")
        return picked or MISSING
    if widget == "password":
        if form.get(node.key + ".remove") is not None:
            return None
        secret = str(form.get(node.key) or "")
        return secret or MISSING
    if widget == "secret_pairs":
        pairs: dict[str, Any] = dict(_pairs(str(form.get(node.key) or "")))
        for removed in form.getlist(node.key + ".remove"):
            pairs.setdefault(str(removed), None)
        return pairs or MISSING
    raw = str(form.get(node.key) or "")
    text = raw.replace("\r\n", "\n") if widget in ("textarea", "pairs", "json") else raw.strip()
    if not text.strip():
        return MISSING
    if widget == "number":
        return _number(text, node.number or float)
    if widget == "tristate":
        if text not in ("true", "false"):
            raise ValueError("must be yes, no or the default")
        return text == "true"
    if widget == "select":
        allowed = {v for v, _ in node.choices}
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(sorted(allowed))}")
        return text
    if widget == "list":
        items = [i for i in _LIST_SPLIT.split(text) if i]
        return [_number(i, node.number) for i in items] if node.number else items
    if widget == "pairs":
        return dict(_pairs(text))
    if widget == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("must be JSON") from None
    return text


def _number(text: str, kind: type) -> Any:
    try:
        if kind is int:
            return int(text)
        value = float(text)
    except ValueError:
        raise ValueError("must be a whole number" if kind is int else "must be a number") from None
    # Whole numbers stay integers, as JSON would carry them (strict validation refuses 1.0 for an int).
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"line {number} is not 'Name: value'")
        pairs.append((name.strip(), value.strip()))
    return pairs


# --- the facade's field-level errors, beside their fields -------------------------------------


def place_errors(
    spec: FormSpec | None, errors: Sequence[FieldError], top_level: Iterable[str] = ()
) -> tuple[dict[str, list[str]], list[str]]:
    """Each error under the key of the node it is about (the deepest node whose place
    starts its ``loc``), and the errors no node stands for. ``top_level`` names the
    form's own fields outside the config (``name``, ``endpoint``...)."""
    places: dict[tuple[str | int, ...], str] = {(name,): name for name in top_level}
    if spec is not None:
        for node in spec.walk():
            places.setdefault(node.loc, node.key)
            # The same field without union tags (the facade's own checks write it so).
            places.setdefault(("config", *node.path), node.key)
    placed: dict[str, list[str]] = {}
    general: list[str] = []
    for error in errors:
        loc = tuple(error.loc)
        key = next((places[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in places), None)
        if key is None:
            general.append(f"{'.'.join(str(p) for p in loc)}: {error.msg}" if loc else error.msg)
        else:
            placed.setdefault(key, []).append(error.msg)
    return placed, general
