"""The public surface: ``connectord.__all__`` is sorted and is exactly what ``__init__`` exports
(the pattern of httpx's ``tests/test_exported_members.py``).

``__init__`` imports lazily (a table of name -> module read by ``__getattr__``) and
repeats the imports under ``TYPE_CHECKING`` for type checkers: the tests keep the
table, those imports and ``__all__`` in agreement."""

from __future__ import annotations

import ast
import importlib
import inspect

import connectord


def _type_checking_imports() -> dict[str, str]:
    """Each name ``__init__`` imports under ``if typing.TYPE_CHECKING:`` and its module."""
    tree = ast.parse(inspect.getsource(connectord))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                found.update({alias.asname or alias.name: str(stmt.module) for alias in stmt.names})
    return found


def test_all_is_sorted_and_unique() -> None:
    assert connectord.__all__ == sorted(set(connectord.__all__))


def test_all_names_exactly_the_names_init_exports() -> None:
    exports = connectord._EXPORTS
    assert sorted(exports) == connectord.__all__
    assert _type_checking_imports() == exports


def test_every_exported_name_resolves_to_its_module() -> None:
    for name, module in connectord._EXPORTS.items():
        assert getattr(connectord, name) is getattr(importlib.import_module(module), name), name
    assert set(connectord.__all__) <= set(dir(connectord))


def test_nothing_else_is_public() -> None:
    tree = ast.parse(inspect.getsource(connectord))
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            defined.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    assert {name for name in defined if not name.startswith("_")} == set()


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(connectord, "NoSuchThing")


def test_the_core_contract_names_are_public() -> None:
    """What a library user imports from ``connectord`` (README, "Library quickstart")."""
    for name in ("get_connectors_facade", "ConnectorsFacade", "ConnectorInfo", "TestResult"):
        assert name in connectord.__all__
