"""``connectord backup`` while 4 clients write, ``connectord restore`` into an empty data
directory, and compare (issue 14.3). Real server, real CLI processes, real SQLite."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectord import ConnectorsFacade, Settings
from tests.cli_server import CLI_ENV, SCRIPT, run_cli, serve

PASSWORD = "backup-pw-" + os.urandom(6).hex()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    return subprocess.run([SCRIPT, *args], env={**base, **env}, capture_output=True, text=True, timeout=60)


def _writer(url: str, key: str, n: int, stop: threading.Event, acked: list[str], tenant: set[str]) -> None:
    """Create connectors (each with a secret) until told to stop; record each acknowledged one."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        i = 0
        while not stop.is_set():
            body = {
                "name": f"w{n}-{i}",
                "connector_type": "sql",
                "endpoint": "postgresql://127.0.0.1:5432/app",
                "config": {"username": "app", "password": PASSWORD},
            }
            answer = client.post("/api/v1/connectors", json=body)
            assert answer.status_code == 201, answer.text
            acked.append(answer.json()["id"])
            tenant.add(answer.json()["tenant_id"])
            i += 1


async def _read_all(settings: Settings, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Every connector of the tenant, checking that each sealed secret opens."""
    async with ConnectorsFacade(settings=settings) as facade:
        found: dict[str, dict[str, Any]] = {}
        async for info in _all(facade, tenant_id):
            secrets = await facade._open_secrets(info)  # the ring opens every sealed secret
            assert secrets == {"password": PASSWORD}
            found[info.id] = info.to_dict()
        return found


async def _all(facade: ConnectorsFacade, tenant_id: str) -> Any:
    cursor = None
    while True:
        page = await facade.list_connectors_page(tenant_id, None, None, 1000, cursor)
        for info in page.items:
            yield info
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def test_backup_while_four_clients_write_then_restore_and_compare(tmp_path: Path) -> None:
    source = tmp_path / "data"
    with serve(source) as server:
        env = {"CONNECTORD_DATA_DIR": str(source)}
        key = run_cli(env, "keys", "create", "--tenant", "ops", "--scope", "connectors:write", "--key-only")
        stop = threading.Event()
        acked: list[list[str]] = [[] for _ in range(4)]
        tenant: set[str] = set()
        writers = [
            threading.Thread(target=_writer, args=(server.url, key, n, stop, acked[n], tenant))
            for n in range(4)
        ]
        for w in writers:
            w.start()
        deadline = time.monotonic() + 20
        while sum(map(len, acked)) < 40:  # writes are flowing before the backup starts
            assert all(w.is_alive() for w in writers), "a writer failed"
            assert time.monotonic() < deadline, "the writers did not get going"
            stop.wait(0.05)
        before = {cid for ids in acked for cid in ids}
        file = tmp_path / "backups" / "store.db"
        file.parent.mkdir()
        done = _cli({"CONNECTORD_DATA_DIR": str(source)}, "backup", str(file), "--include-keyring")
        after_backup = sum(map(len, acked))
        stop.set()
        for w in writers:
            w.join(20)
        assert done.returncode == 0, done.stderr
        assert "key ring written to" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr
        assert after_backup > len(before), "the clients kept writing while the backup ran"

    ring = file.with_name("store.db.keyring")
    for path in (file, ring):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert PASSWORD.encode() not in file.read_bytes()  # secrets stay sealed in the backup

    restored = tmp_path / "restored"
    done = _cli({"CONNECTORD_DATA_DIR": str(restored)}, "restore", str(file), "--keyring", str(ring))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700

    (tenant_id,) = tenant
    original = asyncio.run(_read_all(Settings(data_dir=source), tenant_id))
    copy = asyncio.run(_read_all(Settings(data_dir=restored), tenant_id))
    assert before <= set(copy), "a write acknowledged before the backup began is missing"
    assert set(copy) <= set(original)
    for cid, info in copy.items():  # a consistent snapshot: every row as it was written
        assert info == original[cid]


def test_restore_refuses_a_non_empty_data_directory_and_says_what_a_backup_needs(tmp_path: Path) -> None:
    source = tmp_path / "data"
    with serve(source):
        file = tmp_path / "store.db"
        done = _cli({"CONNECTORD_DATA_DIR": str(source)}, "backup", str(file))
        assert done.returncode == 0, done.stderr
        assert "restoring needs this store's key ring" in done.stdout
        again = _cli({"CONNECTORD_DATA_DIR": str(source)}, "backup", str(file))
        assert again.returncode != 0
        assert "exists" in again.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    refused = _cli({"CONNECTORD_DATA_DIR": str(busy)}, "restore", str(file))
    assert refused.returncode != 0
    assert "not empty" in refused.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["something"]
    not_a_backup = tmp_path / "junk.db"
    not_a_backup.write_bytes(os.urandom(4096))
    refused = _cli({"CONNECTORD_DATA_DIR": str(tmp_path / "empty")}, "restore", str(not_a_backup))
    assert refused.returncode != 0
    assert "not a SQLite database" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_backup_and_restore_refuse_postgres(tmp_path: Path, command: str) -> None:
    env = {
        "CONNECTORD_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x",
        "CONNECTORD_DATA_DIR": str(tmp_path),
    }
    done = _cli(env, command, str(tmp_path / "f.db"))
    assert done.returncode != 0
    assert "pg_dump" in done.stderr


def test_the_pg_dump_recipe_round_trips(tmp_path: Path, fresh_pg_url: str) -> None:
    """docs/operations.md's PostgreSQL recipe, as written there: pg_dump -Fc, then
    pg_restore into a new database; every connector and sealed secret comes back."""
    ring = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(data_dir=tmp_path, database_url=fresh_pg_url, secret_key=ring)

    async def fill() -> str:
        async with ConnectorsFacade(settings=settings) as facade:
            for i in range(20):
                await facade.register_connector(
                    "t1",
                    f"db{i}",
                    "sql",
                    "postgresql://127.0.0.1:5432/app",
                    {"username": "a", "password": PASSWORD},
                )
        return "t1"

    asyncio.run(fill())
    dump = tmp_path / "connectord.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", fresh_pg_url], check=True, timeout=60)
    copy_url = fresh_pg_url + "_copy"
    name = copy_url.rsplit("/", 1)[1]
    admin = fresh_pg_url.rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True, timeout=30)
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={copy_url}", str(dump)], check=True, timeout=60
        )
        original = asyncio.run(_read_all(settings, "t1"))
        restored = asyncio.run(
            _read_all(Settings(data_dir=tmp_path, database_url=copy_url, secret_key=ring), "t1")
        )
        assert len(original) == 20
        assert restored == original
    finally:
        subprocess.run(
            ["psql", admin, "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], timeout=30
        )
