"""Forms generated from a connector type's config JSON Schema.

:func:`form_spec` reads a type's published schema once and gives a tree of
nodes: a :class:`Field` per input, a :class:`Group` per nested object, a
:class:`Choice` per discriminated union (``auth``'s ``kind``). The templates
render that tree; :mod:`connectord.console.formdata` fills it from a stored
config and reads a posted form back into the config the facade validates.

Secrets (``writeOnly`` in the schema) are password inputs that are never filled:
left empty, the config omits them and the stored value is kept (the facade's
rule for updates); a "remove" box sends ``null``, which removes it. A value equal
to the schema's default is left out unless the stored config had it, so a saved
form stores what the person chose, not every default.

Each input's ``name`` is its place in the config, dotted, with the union's tag
where pydantic puts one in its error locations (``config.auth.bearer.token``):
an error's ``loc`` finds its field directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

#: The widgets a field renders as.
WIDGETS = frozenset(
    {
        "text",  # one line of text
        "textarea",  # long text (PEM certificates, queries)
        "password",  # a secret: never filled
        "number",  # integer or number
        "checkbox",  # a boolean with a default
        "tristate",  # a boolean that may be left to the default (null)
        "select",  # one of an enum
        "checkboxes",  # several of an enum (an array of enum values)
        "list",  # an array of plain values, comma-separated
        "pairs",  # an object of strings: one "Name: value" per line
        "secret_pairs",  # an object of secret strings: new lines only, the set ones listed
        "json",  # anything else: JSON text
    }
)
#: Words written in capitals in labels.
_ACRONYMS = {
    "api",
    "arn",
    "aws",
    "ca",
    "ehlo",
    "http",
    "id",
    "mqtt",
    "amqp",
    "oauth2",
    "pem",
    "sasl",
    "sql",
    "ssl",
    "tls",
    "url",
}
#: Options every type has, shown folded under "Timeout and TLS" (the rest of a config
#: is what tells connectors of a type apart).
ADVANCED = frozenset({"timeout", "tls_verify", "ca_pem"})
_LONG_TEXT = 4096
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Field:
    """One input."""

    #: What the templates render: ``field``, ``group`` or ``choice``.
    kind: ClassVar[str] = "field"
    key: str
    #: Where the value goes in the config (no union tags): ``("auth", "token")``.
    path: tuple[str, ...]
    #: Where pydantic reports its errors: ``("config", "auth", "bearer", "token")``.
    loc: tuple[str, ...]
    label: str
    help: str
    widget: str
    required: bool = False
    default: Any = None
    #: ``(value, label)`` of a select or of checkboxes.
    choices: tuple[tuple[str, str], ...] = ()
    #: ``int`` or ``float`` for a number (and a list's items); ``None`` otherwise.
    number: type | None = None
    max_length: int | None = None
    #: A JSON field whose schema has a secret somewhere inside (never shown back as typed).
    holds_secret: bool = False

    @property
    def secret(self) -> bool:
        """Whether the value is (or holds) something write-only."""
        return self.widget in ("password", "secret_pairs") or self.holds_secret

    @property
    def dom_id(self) -> str:
        """The element id of the input."""
        return dom_id(self.key)


@dataclass(frozen=True, slots=True)
class Group:
    """A nested object: a fieldset of its properties."""

    kind: ClassVar[str] = "group"
    key: str
    path: tuple[str, ...]
    loc: tuple[str, ...]
    label: str
    help: str
    children: tuple[Node, ...]
    required: bool = False

    @property
    def dom_id(self) -> str:
        """The element id of the fieldset."""
        return dom_id(self.key)


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of a discriminated union, named by its tag."""

    kind: str
    help: str
    group: Group


@dataclass(frozen=True, slots=True)
class Choice:
    """A discriminated union: a select of the tag and a fieldset per variant (the page's
    script shows the chosen one; without script every fieldset shows, and only the
    chosen one is read)."""

    kind: ClassVar[str] = "choice"
    key: str
    path: tuple[str, ...]
    loc: tuple[str, ...]
    label: str
    help: str
    #: The property that names the variant (``kind``).
    tag: str
    selector: Field
    variants: tuple[Variant, ...]
    required: bool = False
    #: The tag that stands for "not set" (a ``none`` variant), if any.
    unset_kind: str | None = None

    @property
    def dom_id(self) -> str:
        """The element id of the fieldset."""
        return dom_id(self.key)


Node = Field | Group | Choice


@dataclass(frozen=True, slots=True)
class FormSpec:
    """The form of one connector type's config."""

    connector_type: str
    nodes: tuple[Node, ...]

    @property
    def main(self) -> tuple[Node, ...]:
        """The nodes shown first: required ones, then unions (how it authenticates), then the rest."""
        shown = [n for n in self.nodes if n.path[-1] not in ADVANCED]
        return tuple(sorted(shown, key=lambda n: 0 if n.required else (1 if isinstance(n, Choice) else 2)))

    @property
    def advanced(self) -> tuple[Node, ...]:
        """The options every type has (:data:`ADVANCED`), shown folded."""
        return tuple(n for n in self.nodes if n.path[-1] in ADVANCED)

    def walk(self) -> Iterable[Node]:
        """Every node, parents first."""
        yield from _walk(self.nodes)

    def fields(self) -> list[Field]:
        """Every input."""
        return [n for n in self.walk() if isinstance(n, Field)]

    def secret_labels(self) -> list[str]:
        """The dotted paths of the write-only fields (for the types catalogue)."""
        return sorted({".".join(f.path) for f in self.fields() if f.secret})


def dom_id(key: str) -> str:
    """An element id for a form key (ids keep to letters, digits, ``_`` and ``-``)."""
    return "f-" + _KEY_CHARS.sub("-", key).strip("-")


def label_for(name: str) -> str:
    """A label from a property name: ``tls_verify`` is "TLS verify", ``ca_pem`` "CA PEM"."""
    words = [w.upper() if w.lower() in _ACRONYMS else w for w in name.split("_") if w]
    if not words:
        return name
    first = words[0]
    words[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(words)


# --- reading the schema -------------------------------------------------------------------


def form_spec(connector_type: str, schema: Mapping[str, Any]) -> FormSpec:
    """The form of a type's config JSON Schema (as ``GET /connector-types`` publishes it)."""
    reader = _Reader(schema.get("$defs") or {})
    nodes = reader.properties(schema, ("config",), (), ())
    return FormSpec(connector_type, tuple(nodes))


class _Reader:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs

    def resolve(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """A schema with its ``$ref`` (or a single ``allOf``) followed, the outer keys kept."""
        out = dict(schema)
        for _ in range(20):  # a bound: a self-referencing schema cannot loop forever
            ref = out.pop("$ref", None)
            if ref is None and len(out.get("allOf") or ()) == 1:
                ref = out.pop("allOf")[0].get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
                break
            out = {**self.defs.get(ref.removeprefix("#/$defs/"), {}), **out}
        return out

    def properties(
        self,
        schema: Mapping[str, Any],
        key_prefix: tuple[str, ...],
        path: tuple[str, ...],
        tags: tuple[str, ...],
    ) -> list[Node]:
        required = set(schema.get("required") or ())
        nodes: list[Node] = []
        for name, prop in (schema.get("properties") or {}).items():
            nodes.append(self.node(name, prop, key_prefix, path, tags, name in required))
        return nodes

    def node(
        self,
        name: str,
        prop: Mapping[str, Any],
        key_prefix: tuple[str, ...],
        path: tuple[str, ...],
        tags: tuple[str, ...],
        required: bool,
    ) -> Node:
        schema = self.resolve(prop)
        nullable = False
        options = schema.get("anyOf")
        if isinstance(options, list):
            kept = [o for o in options if o.get("type") != "null"]
            nullable = len(kept) < len(options)
            if len(kept) == 1:
                outer = {k: v for k, v in schema.items() if k != "anyOf"}
                schema = {**self.resolve(kept[0]), **outer}
        key_parts = (*key_prefix, *tags, name)
        common: dict[str, Any] = {
            "key": ".".join(key_parts),
            "path": (*path, name),
            "loc": key_parts,
            "label": label_for(name),
            "help": _text(schema.get("description")),
            "required": required,
        }
        if isinstance(schema.get("oneOf"), list) and isinstance(schema.get("discriminator"), Mapping):
            return self.choice(schema, common)
        if "anyOf" in schema:
            return self.json(schema, common)
        return self.field(schema, common, nullable)

    def field(self, schema: Mapping[str, Any], common: dict[str, Any], nullable: bool) -> Node:
        kind = schema.get("type")
        default = schema.get("default")
        if "enum" in schema:
            choices = tuple((str(v), str(v)) for v in schema["enum"])
            return Field(**common, widget="select", default=default, choices=choices)
        if kind == "boolean":
            return Field(
                **common, widget="tristate" if nullable or default is None else "checkbox", default=default
            )
        if kind in ("integer", "number"):
            number = int if kind == "integer" else float
            return Field(**common, widget="number", default=default, number=number)
        if kind == "string":
            secret = schema.get("writeOnly") is True or schema.get("format") == "password"
            long = int(schema.get("maxLength") or 0) > _LONG_TEXT or common["path"][-1].endswith("_pem")
            widget = "password" if secret else ("textarea" if long else "text")
            return Field(**common, widget=widget, default=default, max_length=schema.get("maxLength"))
        if kind == "array":
            return self.array(schema, common, default)
        if kind == "object" and schema.get("properties"):
            children = self.properties(schema, common["loc"], common["path"], ())
            return Group(**common, children=tuple(children))
        values = schema.get("additionalProperties")
        if kind == "object" and isinstance(values, Mapping) and self.resolve(values).get("type") == "string":
            secret = self.resolve(values).get("writeOnly") is True
            return Field(**common, widget="secret_pairs" if secret else "pairs")
        return self.json(schema, common, default)

    def json(self, schema: Mapping[str, Any], common: dict[str, Any], default: Any = None) -> Field:
        """A JSON text area: the shapes a form cannot show field by field."""
        return Field(**common, widget="json", default=default, holds_secret=self.holds_secret(schema))

    def holds_secret(self, schema: Any, depth: int = 0) -> bool:
        """Whether a schema has a ``writeOnly`` value anywhere inside (its ``$ref`` followed)."""
        if depth > 20:  # a bound: a self-referencing schema cannot loop forever
            return False
        if isinstance(schema, Mapping):
            schema = self.resolve(schema)
            if schema.get("writeOnly") is True:
                return True
            return any(self.holds_secret(v, depth + 1) for v in schema.values())
        if isinstance(schema, list):
            return any(self.holds_secret(v, depth + 1) for v in schema)
        return False

    def array(self, schema: Mapping[str, Any], common: dict[str, Any], default: Any) -> Field:
        items = self.resolve(schema.get("items") or {})
        if "enum" in items:
            choices = tuple((str(v), str(v)) for v in items["enum"])
            return Field(**common, widget="checkboxes", default=default, choices=choices)
        kind = items.get("type")
        if kind in ("integer", "number", "string") and not self.holds_secret(items):
            number = {"integer": int, "number": float}.get(kind)
            return Field(**common, widget="list", default=default, number=number)
        return self.json(schema, common, default)

    def choice(self, schema: Mapping[str, Any], common: dict[str, Any]) -> Node:
        tag = str(schema["discriminator"].get("propertyName") or "kind")
        variants: list[Variant] = []
        for option in schema["oneOf"]:
            arm = self.resolve(option)
            kind = (arm.get("properties") or {}).get(tag, {}).get("const")
            if not isinstance(kind, str):
                return self.json(schema, common)
            body = {**arm, "properties": {k: v for k, v in arm["properties"].items() if k != tag}}
            children = self.properties(body, common["loc"], common["path"], (kind,))
            group = Group(
                key=f"{common['key']}.{kind}",
                path=common["path"],
                loc=(*common["loc"], kind),
                label=kind,
                help=_text(arm.get("description")),
                children=tuple(children),
            )
            variants.append(Variant(kind, group.help, group))
        unset = "none" if any(v.kind == "none" for v in variants) else None
        choices = tuple((v.kind, v.kind) for v in variants)
        if unset is None and not common["required"]:
            choices = (("", "not set"), *choices)
        selector = Field(
            key=f"{common['key']}.{tag}",
            path=(*common["path"], tag),
            loc=(*common["loc"], tag),
            label=label_for(tag),
            help="",
            widget="select",
            required=True,
            choices=choices,
        )
        return Choice(**common, tag=tag, selector=selector, variants=tuple(variants), unset_kind=unset)


def _text(description: object) -> str:
    """A schema's description as help text (docstrings' ``literal`` quotes dropped)."""
    return str(description or "").replace("``", "")


def _walk(nodes: Sequence[Node]) -> Iterable[Node]:
    for node in nodes:
        yield node
        if isinstance(node, Group):
            yield from _walk(node.children)
        elif isinstance(node, Choice):
            yield node.selector
            for variant in node.variants:
                yield variant.group
                yield from _walk(variant.group.children)
