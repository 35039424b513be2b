"""The embedded store's files are private: data directory 0700; database, WAL, shared memory,
lock and key files 0600 (issue 9, item 12), whatever the umask lets through beyond that."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.secrets import KEY_FILE_NAME
from connectord.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_data_dir_and_its_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    previous = os.umask(0o022)  # the usual default, under which files were made 0644
    try:
        async with ConnectorsFacade(settings=Settings(data_dir=data_dir)) as facade:
            await Admin(facade).create_tenant("modes")  # a write: the WAL and shm files exist now
            files = sorted(p.name for p in data_dir.iterdir())
            modes = {p.name: _mode(p) for p in data_dir.iterdir()}
    finally:
        os.umask(previous)
    assert _mode(data_dir) == 0o700
    db = Settings(data_dir=data_dir).sqlite_path.name
    assert {db, f"{db}-wal", f"{db}-shm", KEY_FILE_NAME} <= set(files), files
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}
