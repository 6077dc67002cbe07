"""tongdao.filemodes on its own (the server process is tests/e2e/test_data_dir_modes.py)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tongdao.filemodes import private_store, tighten_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_sqlite_gives_its_wal_and_shm_the_store_files_mode(tmp_path: Path, umask_022: None) -> None:
    store = tmp_path / "deep" / "data" / "tongdao.sqlite3"
    private_store(store)
    assert mode(store.parent) == 0o700 and mode(store) == 0o600
    conn = sqlite3.connect(store)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.commit()
        siblings = [store.with_name(store.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in siblings)
        assert [mode(p) for p in siblings] == [0o600, 0o600]
    finally:
        conn.close()


def test_tightening_only_takes_bits_away(tmp_path: Path) -> None:
    loose, strict = tmp_path / "loose", tmp_path / "strict"
    loose.write_text("x")
    strict.write_text("x")
    loose.chmod(0o664)
    strict.chmod(0o400)
    tighten_file(loose)
    tighten_file(strict)
    tighten_file(tmp_path / "missing")
    assert (mode(loose), mode(strict)) == (0o600, 0o400)


def test_a_shared_directory_is_named_in_a_warning(
    tmp_path: Path, umask_022: None, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "other.txt").write_text("not ours")
    with caplog.at_level(logging.WARNING, logger="tongdao.store"):
        private_store(tmp_path / "x.db")
    assert mode(tmp_path) == 0o755 and mode(tmp_path / "x.db") == 0o600
    assert any(
        str(tmp_path) in r.getMessage() and "0o755" in r.getMessage() for r in caplog.records
    )
