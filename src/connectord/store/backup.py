"""Online backup and restore of the embedded SQLite store (``docs/operations.md``).

A backup is SQLite's own backup API (``sqlite3.Connection.backup``) run against
the live database: it copies a consistent snapshot while a server keeps writing
(WAL readers never block the writer). Secrets stay sealed in it, so it is useless
without the key ring; the ring is copied only on request, to a separate file with
mode 0600, so an operator can keep the two apart. PostgreSQL stores are backed up
with ``pg_dump`` (the recipe is in ``docs/operations.md``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from connectord.errors import ConfigurationError, ValidationError
from connectord.secrets import KEY_FILE_NAME

#: Pages copied per step: small steps let the server's writer in between them.
_PAGES_PER_STEP = 256


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What a backup or a restore holds (counts, never contents) and where the key ring went."""

    path: Path
    connectors: int
    secrets: int
    revision: str
    keyring: Path | None = None


def backup_sqlite(database: Path, target: Path, *, keyring_to: Path | None = None) -> BackupSummary:
    """Copy the live database at ``database`` to ``target`` (mode 0600), and the key file
    beside it to ``keyring_to`` when asked. Refuses to overwrite an existing file."""
    if not database.exists():
        raise ConfigurationError(f"no embedded store at {database} (is CONNECTORD_DATA_DIR right?)")
    for path in (target, keyring_to):
        if path is not None and path.exists():
            raise ValidationError(f"{path} exists; give a new file name")
    key_file = database.parent / KEY_FILE_NAME
    if keyring_to is not None and not key_file.exists():
        raise ConfigurationError(
            "this store's key ring is CONNECTORD_SECRET_KEY, not a file: keep that value where you keep it"
        )
    partial = target.with_name(target.name + ".partial")
    _create_private(partial)
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                source.backup(copy, pages=_PAGES_PER_STEP)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            source.close()
        _fsync(partial)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    if keyring_to is not None:
        _create_private(keyring_to)
        shutil.copyfile(key_file, keyring_to)
        _fsync(keyring_to)
    return _summary(target, keyring_to)


def restore_sqlite(backup: Path, data_dir: Path, *, keyring: Path | None = None) -> BackupSummary:
    """Restore ``backup`` as the store of ``data_dir``, which must be empty or absent (a
    restore never overwrites a store), with the key file ``keyring`` when given."""
    if not backup.is_file():
        raise ValidationError(f"no backup file at {backup}")
    if keyring is not None and not keyring.is_file():
        raise ValidationError(f"no key ring file at {keyring}")
    _check_backup(backup)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValidationError(f"{data_dir} is not empty; restore into an empty data directory")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    target = data_dir / "connectord.db"
    _create_private(target)
    with (
        contextlib.closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=WAL")
    _fsync(target)
    restored_ring = None
    if keyring is not None:
        restored_ring = data_dir / KEY_FILE_NAME
        _create_private(restored_ring)
        shutil.copyfile(keyring, restored_ring)
        _fsync(restored_ring)
    return _summary(target, restored_ring)


def _check_backup(path: Path) -> None:
    """A readable SQLite file that passes its integrity check and holds a connectord schema."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            (verdict,) = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise ValidationError(f"{path} is not a SQLite database") from exc
    if verdict != "ok":
        raise ValidationError(f"{path} fails SQLite's integrity check")
    if not {"alembic_version", "connectors", "connector_secrets"} <= tables:
        raise ValidationError(f"{path} is not a connectord backup")


def _summary(database: Path, keyring: Path | None) -> BackupSummary:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        (connectors,) = conn.execute("SELECT count(*) FROM connectors").fetchone()
        (secrets,) = conn.execute("SELECT count(*) FROM connector_secrets").fetchone()
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return BackupSummary(database, int(connectors), int(secrets), str(revision), keyring)


def _create_private(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
