"""Forms generated from JSON Schema (``console.forms``, ``console.formdata``): every
built-in type, a synthetic schema with nested objects and enums, reading posts back, and
placing the facade's errors beside fields.

The configs a form gives are validated by a real facade (SQLite in a temporary folder).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from connectord.console.editing import metadata_text, parse_metadata
from connectord.console.formdata import (
    MISSING,
    FormState,
    parse_config,
    place_errors,
    state_from_config,
    state_from_form,
)
from connectord.console.forms import WIDGETS, Choice, FormSpec, Group, form_spec, label_for
from connectord.errors import FieldError, ValidationError
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings
from connectord.types.registry import TypeRegistry

REGISTRY = TypeRegistry()


class Form:
    """A posted form: a multi-dict, as the browser sends it."""

    def __init__(self, **fields: str | list[str]) -> None:
        self.fields = {k.replace("__", "."): v if isinstance(v, list) else [v] for k, v in fields.items()}

    def get(self, key: str, /) -> Any:
        values = self.fields.get(key)
        return values[-1] if values else None

    def getlist(self, key: str, /) -> list[Any]:
        return list(self.fields.get(key, []))


def as_posted(spec: FormSpec, state: FormState) -> Form:
    """What the browser posts for a rendered form nobody touched (secrets empty)."""
    form = Form()
    for f in spec.fields():
        if f.widget == "checkbox":
            form.fields[f.key] = ["on"] if state.value(f.key, f.default) else []
        elif f.widget == "checkboxes":
            form.fields[f.key] = list(state.value(f.key, f.default or []))
        else:
            form.fields[f.key] = ["" if f.secret else str(state.value(f.key))]
    return form


def spec_of(type_name: str) -> FormSpec:
    return form_spec(type_name, REGISTRY.describe(REGISTRY.get(type_name))["config_schema"])


@pytest.fixture
async def facade(tmp_path: Path) -> AsyncIterator[ConnectorsFacade]:
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path)) as f:
        yield f


@pytest.mark.parametrize("type_name", sorted(REGISTRY.types()))
def test_every_type_has_a_form_and_every_secret_is_a_password(type_name: str) -> None:
    schema = REGISTRY.describe(REGISTRY.get(type_name))["config_schema"]
    spec = form_spec(type_name, schema)
    fields = spec.fields()
    assert fields
    assert {f.widget for f in fields} <= WIDGETS
    assert all(f.key.startswith("config.") for f in fields)
    assert len({f.key for f in fields}) == len(fields), "two inputs share a name"
    # Every top-level property has its node; every writeOnly one is a secret input.
    assert {n.path[0] for n in spec.nodes} == set(schema["properties"])
    for name, prop in schema["properties"].items():
        options = prop.get("anyOf", [prop])
        if any(o.get("writeOnly") for o in options):
            (node,) = [f for f in fields if f.path == (name,)]
            assert node.secret, name
    # The main part, then what every type has (folded): the same nodes, none twice.
    assert sorted(n.key for n in spec.main + spec.advanced) == sorted(n.key for n in spec.nodes)


def test_the_http_form_has_the_auth_union_and_its_variants() -> None:
    spec = spec_of("http")
    (auth,) = [n for n in spec.nodes if isinstance(n, Choice)]
    assert auth.key == "config.auth"
    assert auth.selector.key == "config.auth.kind"
    assert [v.kind for v in auth.variants] == [
        "none",
        "basic",
        "bearer",
        "api_key",
        "oauth2_client_credentials",
        "oauth2_refresh_token",
    ]
    assert auth.unset_kind == "none"
    bearer = next(v for v in auth.variants if v.kind == "bearer")
    (token,) = bearer.group.children
    assert (token.key, token.path, token.loc) == (
        "config.auth.bearer.token",
        ("auth", "token"),
        ("config", "auth", "bearer", "token"),
    )
    assert token.widget == "password"
    assert token.required
    assert spec.main[0] is auth  # how it authenticates comes first
    assert "auth.token" in spec.secret_labels()


def test_an_untouched_form_gives_an_empty_config() -> None:
    # The browser sends the defaults as shown: checked boxes, the "default" options.
    form = Form(
        config__method="", config__follow_redirects="on", config__tls_verify="on", config__auth__kind="none"
    )
    config, errors = parse_config(spec_of("http"), form)
    assert (config, errors) == ({}, {})


async def test_a_form_round_trip_through_the_facade(facade: ConnectorsFacade) -> None:
    spec = spec_of("http")
    form = Form(
        config__method="HEAD",
        config__health_path=" /healthz ",
        config__headers="X-Trace: on\r\nAccept: application/json",
        config__secret_headers="X-Api-Key: k-123",
        config__expected_status="200, 204",
        config__tls_verify="on",
        config__timeout="2.5",
        config__auth__kind="bearer",
        config__auth__bearer__token="t-456",
        config__auth__basic__username="ignored: another variant",
    )
    config, errors = parse_config(spec, form)
    assert errors == {}
    assert config == {
        "method": "HEAD",
        "health_path": "/healthz",
        "headers": {"X-Trace": "on", "Accept": "application/json"},
        "secret_headers": {"X-Api-Key": "k-123"},
        "expected_status": [200, 204],
        "timeout": 2.5,
        "follow_redirects": False,
        "auth": {"kind": "bearer", "token": "t-456"},
    }
    info = await facade.register_connector("acme", "api", "http", "http://127.0.0.1:9/", config)
    assert sorted(info.secret_fields) == ["auth.token", "secret_headers.X-Api-Key"]
    # Shown again for an edit: the public values as text, the secrets only as set.
    state = state_from_config(spec, info.config, info.secret_fields)
    assert state.value("config.method") == "HEAD"
    assert state.value("config.expected_status") == "200, 204"
    assert state.value("config.auth.kind") == "bearer"
    assert state.secrets_set == {"config.auth.bearer.token", "config.secret_headers:X-Api-Key"}
    assert state.set_names("config.secret_headers") == ["X-Api-Key"]
    assert not any("t-456" in str(v) or "k-123" in str(v) for v in state.values.values())
    # Saved unchanged, with the secrets left empty: nothing changes, the secrets stay.
    config2, errors2 = parse_config(spec, as_posted(spec, state), info.config)
    assert errors2 == {}
    assert config2 == info.config
    same = await facade.update_connector(info.id, "acme", config=config2)
    assert same is not None
    assert (same.version, same.secret_fields) == (info.version, info.secret_fields)


async def test_a_secret_left_empty_is_kept_and_remove_removes_it(facade: ConnectorsFacade) -> None:
    spec = spec_of("http")
    info = await facade.register_connector(
        "acme",
        "api",
        "http",
        "http://127.0.0.1:9/",
        {"auth": {"kind": "bearer", "token": "t"}, "password": "p"},
    )
    shown = {"config__follow_redirects": "on", "config__tls_verify": "on"}  # checked, as rendered
    kept, _ = parse_config(spec, Form(config__auth__kind="bearer", **shown), info.config)
    updated = await facade.update_connector(info.id, "acme", config={**kept, "method": "HEAD"})
    assert updated is not None
    assert sorted(updated.secret_fields) == ["auth.token", "password"]
    removed, _ = parse_config(
        spec, Form(config__auth__kind="bearer", config__password__remove="on", **shown), info.config
    )
    assert removed == {"auth": {"kind": "bearer"}, "password": None}
    updated = await facade.update_connector(info.id, "acme", config=removed)
    assert updated is not None
    assert updated.secret_fields == ["auth.token"]
    # Removing a required secret is refused beside its field.
    gone, _ = parse_config(
        spec, Form(config__auth__kind="bearer", config__auth__bearer__token__remove="on", **shown)
    )
    with pytest.raises(ValidationError) as refused:
        await facade.update_connector(info.id, "acme", config=gone)
    placed, general = place_errors(spec, refused.value.errors)
    assert list(placed) == ["config.auth.bearer.token"]
    assert general == []


async def test_the_facades_errors_land_beside_their_fields(facade: ConnectorsFacade) -> None:
    spec = spec_of("http")
    config, _ = parse_config(spec, Form(config__auth__kind="basic", config__auth__basic__username="a:b"))
    with pytest.raises(ValidationError) as refused:
        await facade.register_connector("acme", "api", "http", "http://127.0.0.1:9/", config)
    placed, general = place_errors(spec, refused.value.errors, ("name", "endpoint"))
    assert set(placed) == {"config.auth.basic.username", "config.auth.basic.password"}
    assert general == []
    # The facade's own checks write locations without the union's tag: the same field.
    sent_again = FieldError(("config", "auth", "token"), "must be sent again, as the destination changes")
    placed, _ = place_errors(
        spec, [sent_again, FieldError(("name",), "taken"), FieldError((), "stale")], ("name",)
    )
    assert placed == {"config.auth.bearer.token": [sent_again.msg], "name": ["taken"]}
    _, general = place_errors(spec, [FieldError(("elsewhere", 1), "odd"), FieldError((), "stale")])
    assert general == ["elsewhere.1: odd", "stale"]


def test_inputs_that_cannot_be_read_are_errors_of_their_field() -> None:
    form = Form(
        config__timeout="soon",
        config__expected_status="200, two hundred",
        config__headers="no colon here",
        config__method="POST",
        config__auth__kind="magic",
    )
    config, errors = parse_config(spec_of("http"), form)
    assert errors == {
        "config.timeout": ["must be a number"],
        "config.expected_status": ["must be a whole number"],
        "config.headers": ["line 1 is not 'Name: value'"],
        "config.method": ["must be one of GET, HEAD"],
        "config.auth.kind": [
            "must be one of none, basic, bearer, api_key, oauth2_client_credentials, oauth2_refresh_token"
        ],
    }
    assert config == {"follow_redirects": False, "tls_verify": False}


async def test_the_custom_types_capabilities_and_tristate(facade: ConnectorsFacade) -> None:
    spec = spec_of("custom")
    config, errors = parse_config(
        spec, Form(config__capabilities=["read", "stream"], config__tls="false", config__tls_verify="on")
    )
    assert errors == {}
    assert config == {"capabilities": ["read", "stream"], "tls": False}
    info = await facade.register_connector("acme", "tcp", "custom", "127.0.0.1:9", config)
    assert info.capabilities == ["read", "stream"]
    state = state_from_config(spec, info.config, info.secret_fields)
    assert state.value("config.capabilities") == ["read", "stream"]
    assert state.value("config.tls") == "false"
    _, bad = parse_config(spec, Form(config__capabilities=["fly"]))
    assert bad == {
        "config.capabilities": ["each must be one of query, read, stream, transaction, vector_search, write"]
    }


def test_a_posted_form_is_shown_again_without_its_secrets() -> None:
    spec = spec_of("http")
    form = Form(config__timeout="soon", config__auth__kind="bearer", config__auth__bearer__token="typed")
    state = state_from_form(spec, form, {"auth": {"kind": "bearer"}}, ["auth.token"])
    assert state.value("config.timeout") == "soon"
    assert state.value("config.auth.kind") == "bearer"
    assert "typed" not in state.values.values()
    assert state.secrets_set == {"config.auth.bearer.token"}


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    depth: int = Field(default=1, ge=0, description="How deep.")
    colour: Colour = Colour.RED
    key: str | None = Field(default=None, json_schema_extra={"writeOnly": True})


class Outer(BaseModel):
    name: str
    inner: Inner = Field(default_factory=Inner)
    maybe: Inner | None = None
    tags: list[str] = Field(default_factory=list)
    odd: int | str | None = None
    many: list[Inner] = Field(default_factory=list)


def test_nested_objects_enums_and_unsupported_shapes() -> None:
    spec = form_spec("synthetic", Outer.model_json_schema())
    by_key = {n.key: n for n in spec.walk()}
    assert isinstance(by_key["config.inner"], Group)
    assert isinstance(by_key["config.maybe"], Group)
    assert by_key["config.name"].required
    colour = by_key["config.inner.colour"]
    assert (colour.widget, colour.choices) == ("select", (("red", "red"), ("blue", "blue")))  # type: ignore[union-attr]
    assert by_key["config.inner.key"].widget == "password"  # type: ignore[union-attr]
    assert by_key["config.tags"].widget == "list"  # type: ignore[union-attr]
    assert by_key["config.odd"].widget == "json"  # type: ignore[union-attr]
    many = by_key["config.many"]
    assert (many.widget, many.secret) == ("json", True)  # type: ignore[union-attr]
    # A JSON field with a secret inside is never shown back as it was typed.
    state = state_from_form(spec, Form(config__many='[{"key": "typed"}]', config__odd="1"))
    assert (state.value("config.many"), state.value("config.odd")) == ("", "1")
    config, errors = parse_config(
        spec,
        Form(config__name="n", config__inner__depth="3", config__inner__colour="blue", config__odd='"x"'),
    )
    assert errors == {}
    assert config == {"name": "n", "inner": {"depth": 3, "colour": "blue"}, "odd": "x"}
    assert Outer.model_validate(config).inner.depth == 3
    # Untouched nested objects are left out; a bad JSON value is its field's error.
    config, errors = parse_config(spec, Form(config__name="n", config__odd="{"))
    assert config == {"name": "n"}
    assert errors == {"config.odd": ["must be JSON"]}
    assert repr(MISSING) == "MISSING"


def test_labels_and_metadata_lines() -> None:
    assert label_for("tls_verify") == "TLS verify"
    assert label_for("ca_pem") == "CA PEM"
    assert label_for("oauth2_client_credentials") == "OAUTH2 client credentials"
    assert label_for("health_path") == "Health path"
    errors: dict[str, list[str]] = {}
    stored = {"team": "a", "cost": 3, "tags": ["x"]}
    text = metadata_text(stored)
    assert text == 'team: a\ncost: 3\ntags: ["x"]'
    assert parse_metadata(text, stored, errors) == stored  # non-text values survive unchanged
    assert parse_metadata("cost: 4\nbroken", stored, errors) == {"cost": "4"}
    assert errors == {"metadata": ["line 2 is not 'key: value'"]}
