"""A SQLite store that trimloop creates is private to its user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trimloop.core.db import make_engine, upgrade


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _beside(sqlite_url: str, name: str) -> Path:
    return Path(sqlite_url.split("///", 1)[1]).parent / name


def test_a_new_sqlite_store_and_its_folder_are_readable_by_their_owner_only(sqlite_url: str):
    database = _beside(sqlite_url, "store") / "trimloop.db"
    old = os.umask(0o022)  # the usual umask: files 0644 and folders 0755 unless trimloop asks otherwise
    try:
        upgrade(f"sqlite:///{database}")
        engine = make_engine(f"sqlite:///{database}")
        with engine.connect() as conn:  # WAL: SQLite gives -wal and -shm the database file's mode
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x)")
            siblings = sorted(database.parent.glob("trimloop.db-*"))
            modes = {p.name: _mode(p) for p in siblings}
        engine.dispose()
    finally:
        os.umask(old)
    assert _mode(database) == 0o600 and _mode(database.parent) == 0o700
    assert "trimloop.db-wal" in modes and "trimloop.db-migrate.lock" in modes
    assert set(modes.values()) == {0o600}, modes


def test_an_existing_store_keeps_the_mode_its_owner_gave_it(sqlite_url: str):
    database = _beside(sqlite_url, "trimloop.db")
    database.touch()
    database.chmod(0o640)
    upgrade(f"sqlite:///{database}")
    assert _mode(database) == 0o640
