"""The connector-type registry: built-ins, schemas, plugins by entry point, unknown types."""

from __future__ import annotations

import logging
import secrets
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectord import BuiltinType, ConnectorsFacade, ErrorKind, Settings, UnknownConnectorTypeError
from connectord.admin import Admin
from connectord.plugin import ENTRY_POINT_GROUP, ConnectorConfig, ConnectorType
from connectord.types.registry import BUILTIN_TYPES, TypeRegistry

# The default capabilities of each type (docs/api.md, "Connector types").
DEFAULT_CAPABILITIES = {
    "http": ["read", "write", "query"],
    "sql": ["read", "write", "query", "transaction"],
    "mcp": ["read", "write", "query"],
    "vector": ["read", "write", "vector_search"],
    "file": ["read", "write"],
    "serverless": ["query"],
    "stream": ["read", "stream"],
    "custom": ["read"],
}


def _nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema of a JSON Schema, with a readable path."""
    if isinstance(schema, dict):
        yield path, schema
        for key, value in schema.items():
            yield from _nodes(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _nodes(value, f"{path}/{i}")


def test_all_eight_builtin_types_are_registered() -> None:
    registry = TypeRegistry(load_entry_points=False)
    assert set(registry.names()) == {t.value for t in BuiltinType} == set(DEFAULT_CAPABILITIES)
    assert set(BUILTIN_TYPES) == set(DEFAULT_CAPABILITIES)
    for name in registry.names():
        assert name in registry
        ctype = registry.get(name)
        assert ctype.name == name
        assert registry.get(name) is ctype  # loaded once


@pytest.mark.parametrize("name", sorted(DEFAULT_CAPABILITIES))
def test_builtin_type_describes_itself(name: str) -> None:
    described = TypeRegistry(load_entry_points=False).get(name).describe()
    assert described["name"] == name
    assert described["description"]
    assert described["capabilities"] == DEFAULT_CAPABILITIES[name]
    schema = described["config_schema"]
    assert schema["type"] == "object"
    assert schema.get("additionalProperties") is False  # unknown options are refused
    assert schema["properties"]["password"]["anyOf"][0] == {
        "format": "password",
        "type": "string",
        "writeOnly": True,
    }
    assert "timeout" in schema["properties"]
    for path, node in _nodes(schema):
        if node.get("format") == "password":
            assert node.get("writeOnly") is True, f"{name}{path}: a secret must be writeOnly"
        if node.get("writeOnly"):
            assert node.get("default") is None, f"{name}{path}: a secret has no published default"


@pytest.mark.parametrize("name", sorted(DEFAULT_CAPABILITIES))
def test_every_config_field_has_a_description(name: str) -> None:
    schema = TypeRegistry(load_entry_points=False).get(name).config_model.model_json_schema()
    models = [("", schema), *((f"$defs/{k}", v) for k, v in schema.get("$defs", {}).items())]
    missing = [
        f"{where}.{field}"
        for where, model in models
        for field, spec in model.get("properties", {}).items()
        if not spec.get("description") and field != "kind"
    ]
    assert missing == []


def test_unknown_type_is_refused() -> None:
    registry = TypeRegistry(load_entry_points=False)
    assert "teleporter" not in registry
    with pytest.raises(UnknownConnectorTypeError) as caught:
        registry.get("teleporter")
    assert caught.value.name == "teleporter"
    assert caught.value.errors[0].loc == ("connector_type",)
    for known in DEFAULT_CAPABILITIES:
        assert known in caught.value.message


class _Echo(ConnectorType):
    """A plain type for registration tests."""

    name: ClassVar[str] = "echo"


class _OtherEcho(ConnectorType):
    name: ClassVar[str] = "echo"


class _FakeCustom(ConnectorType):
    name: ClassVar[str] = "custom"


def test_register_refuses_duplicates_unless_clobber() -> None:
    registry = TypeRegistry(load_entry_points=False)
    first = _Echo()
    registry.register(first)
    assert registry.get("echo") is first
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_OtherEcho())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_FakeCustom())  # a built-in not yet loaded counts too
    replacement = _OtherEcho()
    registry.register(replacement, clobber=True)
    assert registry.get("echo") is replacement
    registry.register(_FakeCustom(), clobber=True)
    assert isinstance(registry.get("custom"), _FakeCustom)
    assert "echo" in registry.names()


def test_the_types_view_is_read_only() -> None:
    view = TypeRegistry(load_entry_points=False).types()
    assert set(view) == set(DEFAULT_CAPABILITIES)
    with pytest.raises(TypeError):
        view["evil"] = _Echo()  # type: ignore[index]


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution (a ``.dist-info`` on ``sys.path``) with two entry points:
    a new type, and one that tries to take a built-in name."""
    module = f"connectord_fake_plugin_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from typing import ClassVar

            from pydantic import Field

            from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeOutcome


            class GreetConfig(ConnectorConfig):
                greeting: str = Field(default="hi", description="What to say.")


            class GreetType(ConnectorType):
                name: ClassVar[str] = "greet"
                config_model: ClassVar[type[ConnectorConfig]] = GreetConfig

                async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
                    return ProbeOutcome(details={"said": ctx.config.greeting})


            class Hijack(ConnectorType):
                name: ClassVar[str] = "http"
            """
        )
    )
    info = tmp_path / "connectord_fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: connectord-fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ngreet = {module}:GreetType\nhttp = {module}:Hijack\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_a_plugin_is_found_by_entry_point_and_loaded_lazily(
    plugin_dist: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        registry = TypeRegistry()
    assert "greet" in registry
    assert plugin_dist not in sys.modules  # named, not imported, until first use
    greet = registry.get("greet")
    assert plugin_dist in sys.modules
    assert greet.describe()["config_schema"]["properties"]["greeting"]["default"] == "hi"
    assert "plugin type 'http' ignored" in caplog.text
    assert type(registry.get("http")).__module__ == "connectord.types.http"
    assert "greet" not in TypeRegistry(load_entry_points=False)


async def test_a_plugin_type_runs_its_own_test(plugin_dist: str, tmp_path: Path) -> None:
    async with ConnectorsFacade(settings=Settings(data_dir=tmp_path / "data")) as facade:
        tenant, _ = await Admin(facade).create_tenant("plugins")
        info = await facade.register_connector(tenant.id, "g", "greet", config={"greeting": "hello"})
        result = await facade.test_connector(info.id, tenant.id)
        assert result.success is True
        assert result.details == {"said": "hello"}


def test_a_lazy_path_must_name_a_type_of_that_name() -> None:
    registry = TypeRegistry(load_entry_points=False)
    registry._lazy["mislabelled"] = "connectord.types.custom:CustomType"
    with pytest.raises(UnknownConnectorTypeError, match="not a ConnectorType named 'mislabelled'"):
        registry.get("mislabelled")


def test_a_broken_plugin_is_named_and_left_out_of_the_listing() -> None:
    registry = TypeRegistry(load_entry_points=False)
    registry._lazy["broken"] = "connectord_no_such_plugin:Type"
    with pytest.raises(UnknownConnectorTypeError, match=r"could not be loaded \(ModuleNotFoundError"):
        registry.get("broken")
    assert "broken" not in registry.types()
    assert "custom" in registry.types()


class _NoProbeConfig(ConnectorConfig):
    """Config of a type that has no probe yet."""


class _NoProbe(ConnectorType):
    """A type that has not got a probe yet."""

    name: ClassVar[str] = "noprobe"
    config_model: ClassVar[type[ConnectorConfig]] = _NoProbeConfig


async def test_a_type_without_a_probe_answers_unsupported(settings: Settings) -> None:
    registry = TypeRegistry(load_entry_points=False)
    registry.register(_NoProbe())
    async with ConnectorsFacade(settings=settings, registry=registry) as facade:
        assert facade.registry is registry
        tenant, _ = await Admin(facade).create_tenant(f"np-{secrets.token_hex(4)}")
        info = await facade.register_connector(tenant.id, "n", "noprobe", endpoint="h.invalid:1")
        result = await facade.test_connector(info.id, tenant.id)
        assert result.success is False
        assert result.details["error_kind"] == ErrorKind.UNSUPPORTED
        assert "not supported" in (result.error or "")
        stored = await facade.get_connector(info.id, tenant.id)
        assert stored is not None
        assert stored.status == "error"
        with pytest.raises(UnknownConnectorTypeError):
            await facade.register_connector(tenant.id, "other", "teleporter", endpoint="h.invalid:1")


def test_the_driver_table_names_every_provider_the_types_offer() -> None:
    registry = TypeRegistry(load_entry_points=False)
    for name in registry.names():
        described = registry.describe(registry.get(name))
        offered = described.get("providers") or described.get("protocols")
        listed = [d["provider"] for d in described["drivers"]]
        if offered:
            assert sorted(listed) == sorted(offered), name
        assert all(d["install"] for d in described["drivers"]), name
    assert registry.drivers("custom") == []


class _Missing(ConnectorType):
    """A plugin type whose probe needs a module nobody installed."""

    name: ClassVar[str] = "needs-missing"

    async def probe(self, ctx: Any) -> Any:
        import connectord_no_such_module  # type: ignore[import-not-found]  # noqa: F401

        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("ctype", "scheme", "config", "module", "hint"),
    [
        ("vector", "http", {"provider": "milvus"}, "pymilvus", "pip install 'connectord[milvus]'"),
        ("stream", "kafka", {}, "aiokafka", "pip install aiokafka"),
        ("needs-missing", "http", {}, "connectord_no_such_module", "install the package that provides it"),
    ],
)
async def test_a_missing_driver_answers_unsupported_with_the_install_command(
    ctype: str,
    scheme: str,
    config: dict[str, Any],
    module: str,
    hint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real probe runs against a loopback listener; ``sys.modules[name] = None`` makes its
    driver's import fail as it does where the package is not installed."""
    # Its submodules too: one loaded earlier in this process would still import.
    for name in [module, *(m for m in sys.modules if m.startswith(f"{module}."))]:
        monkeypatch.setitem(sys.modules, name, None)
    registry = TypeRegistry(load_entry_points=False)
    registry.register(_Missing())
    settings = Settings(data_dir=tmp_path, egress_allow=["127.0.0.0/8"])
    with socket.create_server(("127.0.0.1", 0)) as listener:
        endpoint = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}"
        async with ConnectorsFacade(settings=settings, registry=registry) as facade:
            tenant, _ = await Admin(facade).create_tenant(f"md-{secrets.token_hex(4)}")
            result = await facade.test_definition(tenant.id, "m", ctype, endpoint, config)
    assert result.details["error_kind"] == ErrorKind.UNSUPPORTED, result
    assert module in (result.error or "")
    assert hint in (result.error or "")
