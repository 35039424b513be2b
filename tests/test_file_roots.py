"""File roots per tenant, and the data directory never served (issue 9, item 6).

A root with ``{tenant}`` gives each tenant its own folder: one tenant's file and
SQLite connectors cannot read (or learn through ``probe_rows``) another's. The
server's data directory is refused even when a root holds it (through a symlink
too), and a configuration whose root holds it is refused at start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectord.admin import Admin
from connectord.errors import ConfigurationError
from connectord.facade import ConnectorsFacade
from connectord.network.files import tenant_roots
from connectord.settings import Settings


def _database(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x int)")
    return path


@pytest.fixture
async def two_tenants(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str, str, Path]]:
    files = tmp_path / "files"
    settings = Settings(data_dir=tmp_path / "data", file_roots=[f"{files}/{{tenant}}"])
    async with ConnectorsFacade(settings=settings) as facade:
        admin = Admin(facade)
        a, _ = await admin.create_tenant("a")
        b, _ = await admin.create_tenant("b")
        yield facade, a.id, b.id, files


def test_the_placeholder_is_the_tenant() -> None:
    roots = ["/srv/files/{tenant}", "/srv/shared"]
    assert tenant_roots(roots, "t1") == ("/srv/files/t1", "/srv/shared")
    assert tenant_roots(roots, None) == ("/srv/shared",)


async def test_a_tenant_reaches_only_its_own_root(
    two_tenants: tuple[ConnectorsFacade, str, str, Path],
) -> None:
    facade, a, b, files = two_tenants
    mine = _database(files / a / "app.db")
    theirs = _database(files / b / "app.db")
    (files / b / "docs").mkdir()
    own = await facade.test_definition(a, "own", "sql", f"sqlite:///{mine}")
    assert own.success, own.error
    for endpoint, ctype in ((f"sqlite:///{theirs}", "sql"), (f"file://{files / b / 'docs'}", "file")):
        other = await facade.test_definition(a, "other", ctype, endpoint)
        assert other.details["error_kind"] == "egress_denied", (endpoint, other.error)
        assert "probe_rows" not in other.details
    saved = await facade.register_connector(a, "other", "sql", f"sqlite:///{theirs}")
    result = await facade.test_connector(saved.id, a)
    assert result.details["error_kind"] == "egress_denied"


async def test_the_data_directory_is_never_served(tmp_path: Path) -> None:
    """Even when a root comes to hold it after the start (a symlink changed under it)."""
    data, empty, root = tmp_path / "data", tmp_path / "empty", tmp_path / "root"
    empty.mkdir()
    root.symlink_to(empty, target_is_directory=True)
    async with ConnectorsFacade(settings=Settings(data_dir=data, file_roots=[root])) as facade:
        tenant, _ = await Admin(facade).create_tenant("t")
        root.unlink()
        root.symlink_to(data, target_is_directory=True)
        store = next(p for p in data.iterdir() if p.suffix == ".db")
        result = await facade.test_definition(tenant.id, "store", "sql", f"sqlite:///{root / store.name}")
        assert result.details["error_kind"] == "egress_denied"
        assert "data directory" in (result.error or "")


@pytest.mark.parametrize("root", ["{base}", "{base}/{{tenant}}", "/"])
def test_a_root_holding_the_data_directory_is_refused_at_start(tmp_path: Path, root: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", file_roots=[root.format(base=tmp_path)])
    with pytest.raises(ConfigurationError, match="data directory"):
        settings.check_safe()
    Settings(data_dir=tmp_path / "data", file_roots=[tmp_path / "elsewhere"]).check_safe()
