"""The public surface: ``connectord.__all__`` is sorted and is exactly what ``__init__`` imports
(the pattern of httpx's ``tests/test_exported_members.py``)."""

from __future__ import annotations

import ast
import inspect
import types

import connectord


def test_all_is_sorted_and_unique() -> None:
    assert connectord.__all__ == sorted(set(connectord.__all__))


def test_all_names_exactly_the_names_init_defines() -> None:
    tree = ast.parse(inspect.getsource(connectord))
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            defined.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {name for name in defined if not name.startswith("_") and name != "annotations"}
    assert set(connectord.__all__) == public


def test_every_exported_name_exists_and_nothing_public_is_left_out() -> None:
    for name in connectord.__all__:
        assert hasattr(connectord, name), name
    members = {
        name
        for name, value in vars(connectord).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert members == set(connectord.__all__)


def test_the_core_contract_names_are_public() -> None:
    """DESIGN section 1: what a library user imports from ``connectord``."""
    for name in ("get_connectors_facade", "ConnectorsFacade", "ConnectorInfo", "TestResult"):
        assert name in connectord.__all__
